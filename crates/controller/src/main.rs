use clap::Parser;

fn main() -> std::process::ExitCode {
    kube_endpoints::cli::main(kube_endpoints::cli::Cli::parse())
}
