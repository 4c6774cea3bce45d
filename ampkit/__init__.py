"""ampkit: warehouse product events into Amplitude every hour, provably complete, and reconciled.

The entry points: `ampkit.sync.run` (the hourly job), `ampkit.config.load` (settings),
`ampkit.datamap.load` (what is sent and why not), and the `ampkit` command.
"""
__version__ = "0.1.0"
