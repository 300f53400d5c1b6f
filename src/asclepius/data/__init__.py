"""Data: readers for case reports and MIMIC notes, stage builders, filters, splits."""
