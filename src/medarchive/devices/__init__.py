"""Bedside and wearable devices: readings in, vital-signs Observations out (docs/ingestion.md)."""
