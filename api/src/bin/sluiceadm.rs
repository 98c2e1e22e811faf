//! `sluiceadm`: the admin CLI of sluice (see [`api::cli`]).

fn main() -> std::process::ExitCode {
    api::cli::main()
}
