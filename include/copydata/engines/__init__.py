"""Database engines behind one contract (copydata.engines.base.Engine)."""
