//! Parsing Sigma rules and running them with the direct evaluator.
