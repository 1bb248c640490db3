"""The grid interface: per-site budget timelines driven by the grid operator (OpenADR 2.0b
VEN and a signed HTTP command API), kept in force on the fleet controller, with an audit
trail. docs/grid-api.md is the operator's guide."""
