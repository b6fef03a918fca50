//! `custodian account create`: the password comes from standard input, never from the
//! command line, and never comes back out (stdout, stderr, errors); the account then signs
//! in over HTTP for a session token of its role and controller.

mod common;

use common::*;
use serde_json::json;
use std::io::Write;
use std::process::Stdio;

const PASSWORD: &str = "Zyx-cli-canary-passphrase-3316";

/// Runs `custodian <args>` with `stdin` written to its standard input.
fn run_with_stdin(sb: &Sandbox, args: &[&str], stdin: &str) -> Output {
    let mut child = sb
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn custodian");
    // A refused command may exit before it reads its standard input; the pipe then
    // breaks, which is its answer, not the test's failure.
    match child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.expect("write the password"),
    }
    let out = child.wait_with_output().expect("custodian finishes");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn account_create_reads_the_password_from_stdin_and_the_account_signs_in() {
    let sb = Sandbox::new();
    let operator = sb.init_with_operator();
    let server = sb.serve(&[]);
    let api = server.api();
    let t = setup_tenant(&api, &operator);

    let out = run_with_stdin(
        &sb,
        &[
            "account",
            "create",
            "--login",
            "DPO@Cli.Example",
            "--role",
            "controller_admin",
            "--controller",
            &t.controller,
        ],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let id = out.stdout.trim().to_owned();
    assert!(
        id.starts_with("acc_") && id.len() == 30,
        "{}",
        out.describe()
    );
    assert!(!out.describe().contains("Zyx-"), "{}", out.describe());

    // The account signs in (the login name compared in lower case) for a session of its
    // role and controller.
    let session = expect(
        api.call(
            reqwest::Method::POST,
            "/v1/sessions",
            None,
            None,
            Some(&json!({ "login": "dpo@cli.example", "password": PASSWORD })),
        ),
        201,
    );
    assert_eq!(session["role"], "controller_admin");
    assert_eq!(session["controller"], t.controller.as_str());
    let secret = str_of(&session, "secret");
    expect(api.get("/v1/purposes", secret, None), 200);
    // A trailing "\r\n" is a line end too, not part of the password; an operator account
    // has no controller.
    let out = run_with_stdin(
        &sb,
        &[
            "account",
            "create",
            "--login",
            "ops@cli.example",
            "--role",
            "operator_admin",
        ],
        &format!("{PASSWORD}\r\n"),
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let op = expect(
        api.call(
            reqwest::Method::POST,
            "/v1/sessions",
            None,
            None,
            Some(&json!({ "login": "ops@cli.example", "password": PASSWORD })),
        ),
        201,
    );
    assert_eq!(op["role"], "operator_admin");
    assert!(op["controller"].is_null());

    // Refusals: a short password, a role without its controller (or with one it must not
    // have), a taken login name, a password given as an argument. None echoes the password,
    // none stores anything.
    let refused: Vec<(Vec<&str>, String)> = vec![
        (
            vec![
                "--login",
                "short@cli.example",
                "--role",
                "controller_viewer",
                "--controller",
                &t.controller,
            ],
            "Zyx-short\n".to_owned(),
        ),
        (
            vec![
                "--login",
                "nobody@cli.example",
                "--role",
                "controller_viewer",
            ],
            format!("{PASSWORD}\n"),
        ),
        (
            vec![
                "--login",
                "nobody@cli.example",
                "--role",
                "operator_admin",
                "--controller",
                &t.controller,
            ],
            format!("{PASSWORD}\n"),
        ),
        (
            vec![
                "--login",
                "dpo@cli.example",
                "--role",
                "controller_admin",
                "--controller",
                &t.controller,
            ],
            format!("{PASSWORD}\n"),
        ),
        (
            vec![
                "--login",
                "argv@cli.example",
                "--role",
                "operator_admin",
                "--password",
                PASSWORD,
            ],
            format!("{PASSWORD}\n"),
        ),
        (
            vec!["--login", "Zyx-not-an-email", "--role", "operator_admin"],
            format!("{PASSWORD}\n"),
        ),
    ];
    for (args, stdin) in refused {
        let mut all = vec!["account", "create"];
        all.extend(args.iter().copied());
        let out = run_with_stdin(&sb, &all, &stdin);
        assert_ne!(out.code, Some(0), "{all:?} succeeded: {}", out.describe());
        assert!(
            !out.stderr.contains("Zyx-cli") && !out.stdout.contains("Zyx-cli"),
            "{all:?} echoes the password: {}",
            out.describe()
        );
    }
    for login in [
        "short@cli.example",
        "nobody@cli.example",
        "argv@cli.example",
    ] {
        let r = api.call(
            reqwest::Method::POST,
            "/v1/sessions",
            None,
            None,
            Some(&json!({ "login": login, "password": PASSWORD })),
        );
        assert_eq!(r.status, 401, "{login} was created: {:?}", r.body);
    }
    server.stop();
}
