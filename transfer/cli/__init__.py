"""The command line: one module per command (``main`` dispatches and owns the exit codes),
and what the commands show: the live display, the closing report, the metrics file, the logs.
"""
