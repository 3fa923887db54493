"""Default plugins, registered like any installed plugin: sim exchange, paper broker, file persistence and
the smacross demo strategy."""
