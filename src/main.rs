//! The `guard` binary: parse, run, map the result to an exit code.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = guard::cli::Cli::parse();
    let json = cli.global.json;
    let code = match guard::app::run(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            if json {
                println!("{}", serde_json::json!({ "error": msg }));
            }
            eprintln!("guard: {msg}");
            3
        }
    };
    // Flush what was printed, then end without the C runtime's exit
    // handlers: all they would do is hand the allocator's memory back to a
    // process that is about to vanish. Nothing guard owns needs them:
    // files are synced where it matters, locks go with the process.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once; nothing runs after it.
    unsafe { libc::_exit(code) }
}
