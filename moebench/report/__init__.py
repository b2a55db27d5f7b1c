"""Reports: markdown tables and plots from results files."""
