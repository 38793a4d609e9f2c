"""The parts of ``benchmarks/sources.py`` (server CPU per camera source kind, idle, wake-up), one
module per concern: `runs` (what is measured, the configs), `talk` (status and snapshots),
`measure` (one run), `summary` (the tables). Like `loadgen`, a test tool beside the script,
never imported by the server."""
