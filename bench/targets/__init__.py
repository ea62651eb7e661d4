"""Brokers the suite does not start: the targets file, sessions on them, faults through commands."""
