//! stub
pub fn run(_: crate::cli::FlamegraphArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("todo")
}
