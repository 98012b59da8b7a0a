//! Watch a config namespace: print every change as it happens, resumable from an index.
//!
//!     cargo run -p plum-sdk --example watch_config -- app
//! then `plumctl kv put app greeting hello` from another shell.

use plum_sdk::Client;
use plum_sdk::client::ClientOptions;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let ns = std::env::args().nth(1).unwrap_or_else(|| "app".into());
    let sdk = Client::from_env(ClientOptions::default())?;
    let kv = sdk.kv();
    // A write carries a request id: retried after an unknown outcome, it is applied once.
    let written = kv.put(&ns, "started-by", &format!("watch_config {}", std::process::id())).await?;
    println!("wrote {}/{} version {}", ns, written.key, written.version);
    // From index 0: the current items first, then each change (long polls, any replica).
    let mut watch = kv.watch(&ns, "", 0);
    loop {
        let change = watch.next().await?;
        println!("index {}:", change.index);
        for item in change.items {
            println!("  {} = {} (version {})", item.key, item.value, item.version);
        }
    }
}
