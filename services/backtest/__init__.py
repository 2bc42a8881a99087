"""Backtest a playbook change on recorded history, and calibrate the MQL threshold."""
