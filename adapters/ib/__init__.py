"""Interactive Brokers: the TWS API wire protocol, the gateway simulator and (later) the adapter."""
