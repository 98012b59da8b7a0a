//! `plum-certs`: a local certificate authority and one certificate for the controllers, for
//! `scripts/cluster.sh up --tls` and tests. Not for production: there, use your own PKI.
//!
//! Writes `ca.pem` (what clients and replicas trust), `ca.key`, `controller.pem` and
//! `controller.key` into `--out`; keys are readable by this user only. Files that exist are
//! kept, so running it again changes nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

#[derive(Debug, Parser)]
#[command(name = "plum-certs", about = "Local CA and controller certificate for Plum (development and tests)")]
struct Args {
    /// Directory to write the files into.
    #[arg(long)]
    out: PathBuf,
    /// Names and addresses the controller certificate is valid for.
    #[arg(long = "san", default_values = ["127.0.0.1", "localhost"])]
    sans: Vec<String>,
}

fn write(path: &Path, contents: &str, private: bool) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    let mut file = options.open(path).with_context(|| format!("create {}", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("write {}", path.display()))
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let names = ["ca.pem", "ca.key", "controller.pem", "controller.key"].map(|n| args.out.join(n));
    if names.iter().all(|p| p.exists()) {
        println!("{}: certificates exist, kept", args.out.display());
        return Ok(());
    }
    if let Some(p) = names.iter().find(|p| p.exists()) {
        anyhow::bail!("{} exists but not all four files do: remove the directory's certificates first", p.display());
    }

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "Plum local CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let mut controller = CertificateParams::new(args.sans.clone())?;
    controller.distinguished_name.push(DnType::CommonName, "plum-controller");
    controller.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    controller.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let issuer = Issuer::new(ca, ca_key);
    let cert = controller.signed_by(&key, &issuer)?;

    write(&names[0], &ca_cert.pem(), false)?;
    write(&names[1], &issuer.key().serialize_pem(), true)?;
    write(&names[2], &cert.pem(), false)?;
    write(&names[3], &key.serialize_pem(), true)?;
    println!("{}: CA and controller certificate for {}", args.out.display(), args.sans.join(", "));
    Ok(())
}
