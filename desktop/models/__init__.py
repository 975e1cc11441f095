"""Qt item models of the dashboard: plain data in, rows out, no I/O."""
