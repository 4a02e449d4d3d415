use assert_cmd::Command;

#[test]
fn unknown_subcommand_is_a_usage_error_with_exit_code_2() {
    let out = Command::cargo_bin("smbatch")
        .unwrap()
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("frobnicate"));
}
