"""Monitoring: drift between a reference text set and current inputs, offline (drift.py, report.py for HTML) and
online in the server (online.py: rolling windows and gauges)."""
