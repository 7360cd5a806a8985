"""Terminal tables and number formatting."""
