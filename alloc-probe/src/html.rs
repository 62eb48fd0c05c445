//! stub
pub fn run(_: crate::cli::ReportArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("todo")
}
