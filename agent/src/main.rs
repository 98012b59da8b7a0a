//! `plum-agent`: not built yet (arrives with the agent issue). Says so instead of pretending.

fn main() {
    eprintln!("plum-agent is not implemented yet");
    std::process::exit(2);
}
