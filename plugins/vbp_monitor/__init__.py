"""vbp-monitor: supervision of volume-based procurement (集中带量采购).

The logic of every DAG lives here so that tests call it without a running Airflow.
Nothing heavy (pandas, great_expectations, openpyxl, docx) is imported at package level:
DAG files import this package while they are parsed.
"""
