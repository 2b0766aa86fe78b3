"""The vocabulary that crosses the bus: subjects, streams, consumers and event models.

Pure data: nothing in this package opens a connection. Every service and tool
imports its subject names and event shapes from here and nowhere else.
"""
