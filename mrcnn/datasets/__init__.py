"""Ready-made ``Dataset`` subclasses: annotation-format adapters and the synthetic shapes data."""
