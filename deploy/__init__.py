"""The composition root: compile, deploy, the ``wattledger`` command line, and the wiring
of the systems."""
