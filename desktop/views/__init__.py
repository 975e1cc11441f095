"""Dashboard widgets: they draw model objects and emit signals for operator actions; they never do I/O."""
