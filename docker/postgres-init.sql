-- One PostgreSQL 16 for Airflow's metadata (database "airflow") and the warehouse ("vbp").
CREATE DATABASE vbp OWNER airflow;
