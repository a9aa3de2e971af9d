//! Writers for server → client frames. See the module contract in `proto`.
