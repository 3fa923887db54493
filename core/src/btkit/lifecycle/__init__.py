"""The pure signal lifecycle: state + market data in → new state + events out. No I/O here."""
