"""Pure authorization policy: decisions, control arbitration, grants, audit."""
