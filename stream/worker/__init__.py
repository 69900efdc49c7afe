"""The Faust worker: app, agent, pure recommendation step, state rows, web pages."""
