//! `plumctl`: not built yet (arrives with the SDK issue). Says so instead of pretending.

fn main() {
    eprintln!("plumctl is not implemented yet; use the HTTP API (see README.md)");
    std::process::exit(2);
}
