"""Reports: tables, plots and the history page, rendered from saved runs."""
