"""Reading the store: SQL aggregation into a report model, the regression gate, and its renderers."""
