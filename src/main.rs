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
    std::process::exit(code);
}
