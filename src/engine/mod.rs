//! The engine: a state machine over the DAG that turns every transition
//! into one checkpoint.
