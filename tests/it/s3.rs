//! S3 round trip against a local S3-compatible server (a moto server that `tests/run.sh`
//! starts on loopback and names in `HQFLOW_TEST_S3_ENDPOINT`). The client under test is
//! hqflow's real object-store path: tables, `CREATE EXTERNAL TABLE` and `COPY … TO 's3://…'`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use super::support::{Run, fixture, hqflow_command};

const KEY_ID: &str = "HQFLOWTESTKEYID0001";
const SECRET: &str = "hqflow-test-secret-do-not-print-0001";

fn endpoint() -> Option<String> {
    match std::env::var("HQFLOW_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ if std::env::var_os("CI").is_some() => {
            panic!("HQFLOW_TEST_S3_ENDPOINT is not set under CI: run the tests with tests/run.sh")
        }
        _ => {
            eprintln!(
                "skipping the S3 round trip: HQFLOW_TEST_S3_ENDPOINT is not set (tests/run.sh sets it)"
            );
            None
        }
    }
}

/// Creates a bucket with a plain `PUT /bucket` (the test server does not check signatures).
fn create_bucket(endpoint: &str, bucket: &str) {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(host).expect("the S3 test server accepts connections");
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "bucket creation failed: {response}"
    );
}

fn s3_command(endpoint: &str) -> Command {
    let mut cmd = hqflow_command();
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env_remove("AWS_ENDPOINT")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .current_dir(super::support::root())
        .stdin(std::process::Stdio::null());
    cmd
}

fn run(endpoint: &str, args: &[&str]) -> Run {
    let output = s3_command(endpoint)
        .args(args)
        .output()
        .expect("the hqflow binary runs");
    let run = Run::from(output);
    for secret in [KEY_ID, SECRET] {
        assert!(
            !run.stderr.contains(secret) && !run.stdout.contains(secret),
            "a credential was printed:\n{}",
            run.stderr
        );
    }
    run
}

#[test]
fn s3_round_trip() {
    let Some(endpoint) = endpoint() else { return };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let bucket = format!("hqflow-it-{}-{}", std::process::id(), nanos % 1_000_000_000);
    create_bucket(&endpoint, &bucket);

    let pool = format!("pool={}", fixture("pyarrow_pool.parquet"));
    let copy = format!("COPY (SELECT * FROM pool) TO 's3://{bucket}/pool/' STORED AS PARQUET");
    let r = run(&endpoint, &["sql", "-t", &pool, &copy]);
    r.ok();
    assert!(r.stderr.contains("COPY: 100 rows"), "{}", r.stderr);

    for location in [
        format!("s3://{bucket}/pool/"),
        format!("s3://{bucket}/pool"),
        format!("s3://{bucket}/pool/*.parquet"),
    ] {
        let table = format!("p={location}");
        let r = run(
            &endpoint,
            &[
                "sql",
                "-t",
                &table,
                "SELECT count(*) AS n, count(DISTINCT uid) AS u FROM p",
            ],
        );
        assert_eq!(r.ok(), "n,u\n100,100\n", "reading {location}");
    }

    let ddl = format!(
        "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://{bucket}/pool/'; \
         SELECT count(*) AS n FROM t WHERE img IS NOT NULL"
    );
    assert_eq!(run(&endpoint, &["sql", &ddl]).ok(), "n\n90\n");

    let table = format!("p=s3://{bucket}/pool/");
    let r = run(&endpoint, &["schema", "check", "--table", &table]);
    r.ok();

    let missing = format!("p=s3://{bucket}/nothing-here/");
    run(&endpoint, &["sql", "-t", &missing, "SELECT 1"])
        .fails_with(1, &["no Parquet files", "nothing-here"]);
    let glob = format!("p=s3://{bucket}/pool/*.csv");
    run(&endpoint, &["sql", "-t", &glob, "SELECT 1"]).fails_with(1, &["matches no files"]);
    // Errors and logs pass through redaction: a message that would contain a credential
    // shows *** instead (here the secret is the name of a table that does not exist).
    let echo = format!("SELECT * FROM \"{SECRET}\"");
    let r = run(&endpoint, &["sql", &echo]);
    r.fails_with(1, &["not found", "***"]);
    let table = format!("p=s3://{bucket}/pool/");
    let logged = s3_command(&endpoint)
        .env("HQFLOW_LOG", "trace")
        .args(["sql", "-t", &table, "SELECT count(*) FROM p"])
        .output()
        .expect("the hqflow binary runs");
    let log = String::from_utf8_lossy(&logged.stderr);
    assert!(logged.status.success(), "{log}");
    assert!(
        log.len() > 1000,
        "trace logging produced little output: {log}"
    );
    assert!(
        !log.contains(SECRET) && !log.contains(KEY_ID),
        "a credential reached the log"
    );

    let no_bucket = format!("p=s3://{bucket}-missing/pool/");
    run(&endpoint, &["sql", "-t", &no_bucket, "SELECT 1"]).fails_with(1, &["table 'p'"]);
}
