//! The `grist` binary: parses arguments and hands over to `grist::run`.

fn main() -> std::process::ExitCode {
    grist::main()
}
