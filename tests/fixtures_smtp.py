"""SMTP fixtures (real aiosmtpd server on loopback). Filled in by the mailer work."""
