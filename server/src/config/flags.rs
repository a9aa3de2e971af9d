//! nats-server style command-line flags (`-p 4222`, `--port=4222`, `-DV`, `-sd=DIR`).
//! CONTRACT: `parse_args(args: &[String]) -> Result<Command, FlagError>`; `Command::Run(FlagOptions)`
//! where `FlagOptions::apply(&self, &mut Options)` overrides file settings.
