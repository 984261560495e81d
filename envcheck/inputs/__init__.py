"""What the user gives envcheck, read and checked: the matrix file (matrix), the Docker hosts and registry (hosts),
and the options of each command with the one table of defaults and every environment fallback (options)."""
