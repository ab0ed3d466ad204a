//! The deployment files kept true: the `Dockerfile` (hadolint), `compose.example.yaml`
//! (the Compose specification's schema, through check-jsonschema), the systemd unit
//! `deploy/boardroom.service` (`systemd-analyze verify` and `security`), and what they say
//! checked against the code and the docs: the binary's name, the ports, the paths of the
//! config and the database, the build arguments, the config `docker/README.md` writes (run
//! through `boardroom check-config`), the compose health check (run against a real
//! `boardroom serve`), and the commands, metrics and links of `docs/operations.md`.
//!
//! No Docker engine is needed. The linters come from `scripts/setup.sh`: a missing one
//! fails the test with that advice, never skips it.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::harness::{boardroom_exe, free_port, project_root};

/// The exposure level `systemd-analyze security` gives the unit, times ten; the test fails
/// above it, and `docs/operations.md` states it.
const UNIT_EXPOSURE_TENTHS: u32 = 14;

/// Where the unit expects the binary.
const UNIT_BINARY: &str = "/usr/local/bin/boardroom";

fn read(rel: &str) -> String {
    let path = project_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A `NAME=value` line of `scripts/setup.sh`: the pins the venv's path is made of.
fn setup_pin(name: &str) -> String {
    let prefix = format!("{name}=");
    read("scripts/setup.sh")
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {name}= in scripts/setup.sh"))
}

/// A program from the linters' venv `scripts/setup.sh` builds, at the path it builds it.
fn deploy_tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("BOARDROOM_DEPLOY_VENV").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("BOARDROOM_CACHE").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/boardroom")
        });
        cache.join(format!(
            "deploy-lint-hadolint-{}-cjs-{}",
            setup_pin("HADOLINT_VERSION"),
            setup_pin("CHECK_JSONSCHEMA_VERSION")
        ))
    });
    let tool = venv.join("bin").join(name);
    assert!(
        tool.exists(),
        "no {name} at {}: run scripts/setup.sh (the README's test command does)",
        tool.display()
    );
    tool
}

/// A program on `PATH`.
fn system_tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("no {name} on PATH: run scripts/setup.sh (the README's test command does)")
        })
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A YAML file of the repository as JSON, read by the venv's YAML parser (ruamel.yaml,
/// check-jsonschema's own).
fn yaml(rel: &str) -> serde_json::Value {
    let out = run(Command::new(deploy_tool("python"))
        .arg("-c")
        .arg(
            "import json, sys\nfrom ruamel.yaml import YAML\n\
             json.dump(YAML(typ='safe').load(open(sys.argv[1])), sys.stdout)",
        )
        .arg(project_root().join(rel)));
    assert!(out.status.success(), "parse {rel}: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("json")
}

fn str_at<'a>(v: &'a serde_json::Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(|s| s.as_str()).unwrap_or_else(|| panic!("no string at {pointer}"))
}

/// The Dockerfile's instructions, continuation lines joined, comments left out: (keyword
/// in capitals, arguments), and the stage each is in (0: before the first `FROM`).
fn dockerfile() -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut stage = 0;
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let joined = std::mem::take(&mut current);
        let (keyword, args) = joined.split_once(char::is_whitespace).unwrap_or((&joined, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stage += 1;
        }
        out.push((stage, keyword, args.split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    out
}

/// The arguments of every `keyword` instruction, in order.
fn instructions(keyword: &str) -> Vec<(usize, String)> {
    dockerfile().into_iter().filter(|(_, k, _)| k == keyword).map(|(s, _, a)| (s, a)).collect()
}

/// The one `keyword` instruction of the last (runtime) stage.
fn runtime_instruction(keyword: &str) -> String {
    let last = dockerfile().last().map(|(s, _, _)| *s).expect("instructions");
    let found: Vec<String> =
        instructions(keyword).into_iter().filter(|(s, _)| *s == last).map(|(_, a)| a).collect();
    assert_eq!(found.len(), 1, "the runtime stage's {keyword}: {found:?}");
    found.into_iter().next().expect("one")
}

/// The default value of a global `ARG` (before the first `FROM`).
fn global_arg(name: &str) -> String {
    let prefix = format!("{name}=");
    instructions("ARG")
        .into_iter()
        .filter(|(s, _)| *s == 0)
        .find_map(|(_, a)| a.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| panic!("no global ARG {name}"))
}

/// The port the image exposes (one).
fn exposed_port() -> u16 {
    runtime_instruction("EXPOSE").parse().expect("EXPOSE <port>")
}

/// The config path the image's `CMD` serves with; `ENV BOARDROOM_CONFIG` says the same.
fn image_config_path() -> String {
    let cmd: Vec<String> = serde_json::from_str(&runtime_instruction("CMD")).expect("CMD [..]");
    assert_eq!(cmd[..2], ["serve", "--config"], "CMD: {cmd:?}");
    let env = runtime_instruction("ENV");
    assert_eq!(env, format!("BOARDROOM_CONFIG={}", cmd[2]), "ENV and CMD name one config");
    cmd[2].clone()
}

/// The image's data volume (one).
fn image_volume() -> String {
    let volumes: Vec<String> =
        serde_json::from_str(&runtime_instruction("VOLUME")).expect("VOLUME [..]");
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    volumes[0].clone()
}

/// The bind mounts and volumes of a compose service: (source, target).
fn compose_mounts(compose: &serde_json::Value, service: &str) -> Vec<(String, String)> {
    let volumes = compose["services"][service]["volumes"].as_array().expect("volumes");
    volumes
        .iter()
        .map(|v| match v {
            serde_json::Value::String(short) => {
                let mut parts = short.split(':');
                let source = parts.next().expect("source").to_owned();
                (source, parts.next().expect("target").to_owned())
            }
            long => (str_at(long, "/source").to_owned(), str_at(long, "/target").to_owned()),
        })
        .collect()
}

fn port_of(url_or_addr: &str) -> u16 {
    url_or_addr.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).expect("port")
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split([':', '/']).next().expect("host")
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let root = project_root();
    let out = run(Command::new(deploy_tool("hadolint"))
        .arg("--config")
        .arg(root.join(".hadolint.yaml"))
        .arg("--no-color")
        .arg(root.join("Dockerfile")));
    assert!(out.status.success() && out.stdout.is_empty(), "hadolint: {}", text(&out));
}

#[test]
fn hadolint_fails_on_an_unpinned_package() {
    // The check can fail: the same settings on a Dockerfile with a finding.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("Dockerfile");
    let text_in = "FROM docker.io/library/debian:bookworm-slim\n\
                   RUN apt-get update && apt-get install -y --no-install-recommends curl \
                   && rm -rf /var/lib/apt/lists/*\n";
    std::fs::write(&bad, text_in).expect("write");
    let out = run(Command::new(deploy_tool("hadolint"))
        .arg("--config")
        .arg(project_root().join(".hadolint.yaml"))
        .arg("--no-color")
        .arg(&bad));
    assert!(!out.status.success(), "accepted: {}", text(&out));
    assert!(text(&out).contains("DL3008"), "{}", text(&out));
}

#[test]
fn the_compose_file_passes_the_compose_schema() {
    let root = project_root();
    let check = |file: &Path| {
        run(Command::new(deploy_tool("check-jsonschema"))
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(file))
    };
    let out = check(&root.join("compose.example.yaml"));
    assert!(out.status.success(), "check-jsonschema: {}", text(&out));

    // A misspelt key is caught.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("compose.yaml");
    let misspelt = read("compose.example.yaml").replace("stop_grace_period:", "stop_grace_perod:");
    std::fs::write(&bad, misspelt).expect("write");
    let out = check(&bad);
    assert!(!out.status.success(), "a misspelt key passed");
    assert!(text(&out).contains("stop_grace_perod"), "{}", text(&out));
}

#[test]
fn the_dockerfile_builds_and_runs_the_binary_the_readme_names() {
    let cargo: toml::Table = read("Cargo.toml").parse().expect("Cargo.toml");
    let bin = cargo["bin"].as_array().expect("[[bin]]")[0]["name"].as_str().expect("name");
    assert_eq!(bin, "boardroom");
    assert!(read("README.md").contains(&format!("{bin} serve --config")));

    // The build stage builds that binary, locked, in release, and the runtime stage runs it.
    let runs = instructions("RUN");
    let build = runs
        .iter()
        .find(|(_, a)| a.contains("cargo build"))
        .map(|(_, a)| a.as_str())
        .expect("a cargo build");
    assert!(build.contains(&format!("cargo build --release --locked --bin {bin}")), "{build}");
    assert!(build.contains(&format!("target/release/{bin} /out/{bin}")), "{build}");
    let copy = runtime_instruction("COPY");
    assert_eq!(copy, format!("--from=build /out/{bin} /usr/local/bin/{bin}"));
    assert_eq!(runtime_instruction("ENTRYPOINT"), format!("[\"{bin}\"]"));

    // The toolchain is the one Cargo.toml asks for; docker/README.md says so.
    let rust = global_arg("RUST_VERSION");
    assert_eq!(Some(rust.as_str()), cargo["package"]["rust-version"].as_str(), "RUST_VERSION");
    assert!(read("docker/README.md").contains(&format!("rust:{rust}-bookworm")));

    // BOARDROOM_COMMIT reaches build.rs, which names it in `boardroom --version`.
    let args = instructions("ARG");
    assert!(args.iter().any(|(s, a)| *s == 1 && a == "BOARDROOM_COMMIT=unknown"), "{args:?}");
    let envs = instructions("ENV");
    assert!(envs.iter().any(|(s, a)| *s == 1 && a == "BOARDROOM_COMMIT=${BOARDROOM_COMMIT}"));
    assert!(read("build.rs").contains("env::var(\"BOARDROOM_COMMIT\")"));

    // Both stages install one librocksdb version: the one the binary links.
    let rocksdb = global_arg("ROCKSDB_DEB_VERSION");
    assert!(
        build_stage_installs(&runs, "librocksdb-dev=${ROCKSDB_DEB_VERSION}"),
        "the build stage's librocksdb-dev is not pinned: {runs:?}"
    );
    let last = dockerfile().last().map(|(s, _, _)| *s).expect("stages");
    let runtime_apt = runs
        .iter()
        .find(|(s, a)| *s == last && a.contains("apt-get install"))
        .map(|(_, a)| a.as_str())
        .expect("the runtime stage's apt-get install");
    let (upstream, _) = rocksdb.split_once('-').expect("a Debian version");
    let soname = upstream.rsplit_once('.').map(|(mm, _)| mm).expect("x.y.z");
    assert!(
        runtime_apt.contains(&format!("\"librocksdb{soname}=${{ROCKSDB_DEB_VERSION}}\"")),
        "{runtime_apt}"
    );
    assert!(read("docs/BUILD.md").contains(upstream), "docs/BUILD.md names librocksdb {upstream}");

    // A numeric user that owns the data volume.
    let user = runtime_instruction("USER");
    let (uid, gid) = user.split_once(':').expect("USER uid:gid");
    assert!(uid.parse::<u32>().is_ok_and(|u| u > 0) && gid.parse::<u32>().is_ok(), "{user}");
    assert!(read("Dockerfile").contains(&format!("--uid {uid}")));
    assert!(read("docker/README.md").contains(&format!("uid {uid}")));
}

fn build_stage_installs(runs: &[(usize, String)], package: &str) -> bool {
    runs.iter().any(|(s, a)| *s == 1 && a.contains("apt-get install") && a.contains(package))
}

#[test]
fn the_image_exposes_the_default_listen_port() {
    // config.example.toml's default and the code's are one, and the image exposes it.
    let example: toml::Table = read("config.example.toml").parse().expect("toml");
    let example_listen = example["appservice"]["listen"].as_str().expect("appservice.listen");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("boardroom.toml");
    std::fs::write(&path, MINIMAL).expect("write");
    let settings = boardroom::Config::load(&path).and_then(|c| c.validate()).expect("valid");
    assert_eq!(settings.listen, example_listen.parse::<SocketAddr>().expect("addr"));
    assert_eq!(exposed_port(), settings.listen.port(), "EXPOSE and the default listen port");
}

use crate::harness::MINIMAL_CONFIG as MINIMAL;

#[test]
fn the_compose_file_builds_the_image_and_mounts_what_it_reads() {
    let root = project_root();
    let compose = yaml("compose.example.yaml");
    let services: BTreeSet<&str> =
        compose["services"].as_object().expect("services").keys().map(String::as_str).collect();
    assert_eq!(services, BTreeSet::from(["boardroom", "synapse"]));

    // Built from the repository's Dockerfile.
    let context = root.join(str_at(&compose, "/services/boardroom/build/context"));
    let dockerfile = str_at(&compose, "/services/boardroom/build/dockerfile");
    assert!(context.join(dockerfile).is_file(), "no {dockerfile} in {}", context.display());
    assert_eq!(context.canonicalize().ok(), root.canonicalize().ok(), "the build context");

    // The config where the image reads it, kept out of the image; the data volume.
    let mounts = compose_mounts(&compose, "boardroom");
    let config = image_config_path();
    let (source, _) = mounts.iter().find(|(_, t)| *t == config).expect("the config is mounted");
    let source = source.trim_start_matches("./");
    assert!(read(".dockerignore").lines().any(|l| l == source), "{source} not in .dockerignore");
    assert!(read("docker/README.md").contains(&format!("cat > {source} <<EOF")));
    let volume = image_volume();
    assert!(mounts.iter().any(|(_, t)| *t == volume), "{volume} is not mounted: {mounts:?}");
    assert!(compose["services"]["boardroom"].get("command").is_none(), "the image's CMD serves");

    // Synapse: the version the tests run, its config from the repository, and the
    // registration where that config loads it.
    let image = str_at(&compose, "/services/synapse/image");
    assert!(image.ends_with(&format!(":v{}", setup_pin("SYNAPSE_VERSION"))), "{image}");
    let homeserver = yaml("docker/homeserver.yaml");
    let synapse_mounts = compose_mounts(&compose, "synapse");
    let config_dir = str_at(&compose, "/services/synapse/environment/SYNAPSE_CONFIG_PATH");
    let (hs_source, _) =
        synapse_mounts.iter().find(|(_, t)| t == config_dir).expect("homeserver.yaml mounted");
    assert!(root.join(hs_source).is_file(), "{hs_source}");
    let registration = str_at(&homeserver, "/app_service_config_files/0");
    assert!(synapse_mounts.iter().any(|(_, t)| t == registration), "{registration} not mounted");

    // Stopping waits out Boardroom's two 10 s drains.
    let grace = str_at(&compose, "/services/boardroom/stop_grace_period");
    let secs: u64 = grace.strip_suffix('s').and_then(|s| s.parse().ok()).expect("Ns");
    assert!(secs >= 20, "stop_grace_period {grace}");
}

/// The config `docker/README.md` writes (step 2), with its `$(openssl …)` filled in.
fn docker_readme_config() -> String {
    let readme = read("docker/README.md");
    let start = readme.find("cat > boardroom.toml <<EOF\n").expect("the heredoc") + 26;
    let body = &readme[start..];
    let end = body.find("\n   EOF\n").expect("its end");
    let mut n = 0;
    body[..end]
        .lines()
        .map(|l| l.strip_prefix("   ").unwrap_or(l))
        .map(|l| {
            let mut line = l.to_owned();
            while let Some(at) = line.find("$(openssl rand -hex 32)") {
                n += 1;
                line.replace_range(at..at + 23, &format!("{n:064x}"));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_config_docker_readme_writes_passes_check_config_and_fits_the_compose_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("boardroom.toml");
    let config = docker_readme_config();
    assert!(!config.contains('$'), "an unfilled substitution: {config}");
    std::fs::write(&path, &config).expect("write");
    let out = run(Command::new(boardroom_exe())
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("BOARDROOM_CONFIG")
        .env_remove("BOARDROOM__HOMESERVER__URL"));
    assert!(out.status.success(), "check-config: {}", text(&out));

    let settings = boardroom::Config::load(&path).and_then(|c| c.validate()).expect("valid");
    let compose = yaml("compose.example.yaml");
    // The database lives in the image's volume.
    let volume = image_volume();
    assert!(settings.raw.database.path.starts_with(&volume), "database outside {volume}");
    // Boardroom listens on every interface, on the port the image exposes.
    assert!(settings.listen.ip().is_unspecified(), "{} is not reachable", settings.listen);
    assert_eq!(settings.listen.port(), exposed_port());
    // The homeserver and Boardroom by their compose service names and ports.
    assert_eq!(host_of(&settings.homeserver_url), "synapse");
    let homeserver = yaml("docker/homeserver.yaml");
    assert_eq!(
        u64::from(port_of(&settings.homeserver_url)),
        homeserver["listeners"][0]["port"].as_u64().expect("port")
    );
    let as_url = &settings.raw.appservice.url;
    assert!(compose["services"].get(host_of(as_url)).is_some(), "{as_url}");
    assert_eq!(port_of(as_url), settings.listen.port());
    assert_eq!(settings.server_name.as_str(), str_at(&homeserver, "/server_name"));
}

/// The compose health check's command, for a Boardroom listening on `port`.
fn health_check(port: u16) -> Vec<String> {
    let compose = yaml("compose.example.yaml");
    let test = compose["services"]["boardroom"]["healthcheck"]["test"]
        .as_array()
        .expect("healthcheck.test");
    let test: Vec<String> = test.iter().map(|s| s.as_str().expect("string").to_owned()).collect();
    assert_eq!(test[0], "CMD", "{test:?}");
    let expose = format!("127.0.0.1/{}", exposed_port());
    assert!(test.iter().any(|a| a.contains(&expose)), "not on the exposed port: {test:?}");
    assert!(!test.iter().any(|a| a.contains('$')), "compose would interpolate: {test:?}");
    test[1..].iter().map(|a| a.replace(&expose, &format!("127.0.0.1/{port}"))).collect()
}

/// Runs the health check's command as Docker would (bash is in the runtime image).
fn health_check_passes(port: u16) -> bool {
    let argv = health_check(port);
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the health check");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `boardroom serve` killed when dropped.
struct Serving(std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_compose_health_check_asks_a_running_boardroom() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The port is picked free and let go before Boardroom binds it: another process can
    // take it in between. Boardroom then stops, saying so, and another port is tried.
    for _attempt in 0..5 {
        let port = free_port();
        let config = MINIMAL
            .replace("http://127.0.0.1:8008", &format!("http://127.0.0.1:{}", free_port()))
            .replace("/tmp/boardroom-cli-test", &dir.path().join("db").display().to_string())
            .replace("[appservice]\n", &format!("[appservice]\nlisten = \"127.0.0.1:{port}\"\n"));
        let path = dir.path().join("boardroom.toml");
        std::fs::write(&path, config).expect("write");
        assert!(!health_check_passes(port), "passed with nothing listening");

        let errors = dir.path().join("stderr");
        let mut serving = Serving(
            Command::new(boardroom_exe())
                .args(["serve", "--config"])
                .arg(&path)
                .env_remove("BOARDROOM_CONFIG")
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&errors).expect("stderr file"))
                .spawn()
                .expect("start boardroom serve"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut taken = false;
        while !health_check_passes(port) {
            if serving.0.try_wait().expect("wait").is_some() {
                let said = std::fs::read_to_string(&errors).unwrap_or_default();
                assert!(
                    said.contains(&format!("cannot listen on 127.0.0.1:{port}")),
                    "Boardroom stopped: {said}"
                );
                taken = true;
                break;
            }
            assert!(Instant::now() < deadline, "the health check never passed");
            std::thread::sleep(Duration::from_millis(200));
        }
        if taken {
            continue;
        }
        drop(serving);
        assert!(!health_check_passes(port), "passed after Boardroom stopped");
        return;
    }
    panic!("five ports in a row were taken before Boardroom could bind them");
}

/// The unit, with `ExecStart=`'s binary at `binary`, written as `boardroom.service` in `dir`.
fn unit_in(dir: &Path, binary: &Path) -> PathBuf {
    let unit = read("deploy/boardroom.service");
    assert!(unit.contains(&format!("ExecStart={UNIT_BINARY} serve --config ")));
    let path = dir.join("boardroom.service");
    std::fs::write(&path, unit.replace(UNIT_BINARY, &binary.display().to_string())).expect("write");
    path
}

#[test]
fn the_systemd_unit_verifies_and_keeps_its_hardening() {
    let analyze = system_tool("systemd-analyze");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = unit_in(dir.path(), &boardroom_exe());
    let out = run(Command::new(&analyze).arg("verify").arg(&path));
    assert!(
        out.status.success() && text(&out).trim().is_empty(),
        "systemd-analyze verify: {}",
        text(&out)
    );
    let threshold = format!("--threshold={UNIT_EXPOSURE_TENTHS}");
    let out = run(Command::new(&analyze)
        .args(["security", "--offline=yes", &threshold, "--no-pager"])
        .arg(&path));
    assert!(out.status.success(), "exposure above {UNIT_EXPOSURE_TENTHS}/10: {}", text(&out));

    // What the unit promises, line by line.
    let unit = read("deploy/boardroom.service");
    let lines: BTreeSet<&str> = unit.lines().map(str::trim).collect();
    for line in [
        "Type=exec",
        "User=boardroom",
        "StateDirectory=boardroom",
        "ConfigurationDirectory=boardroom",
        "ExecStart=/usr/local/bin/boardroom serve --config /etc/boardroom/boardroom.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/boardroom",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=",
        "UMask=0077",
    ] {
        assert!(lines.contains(line), "deploy/boardroom.service lacks {line}");
    }
}

#[test]
fn systemd_analyze_verify_fails_on_a_broken_unit() {
    // The check can fail: a binary that is not there, and an unknown key.
    let analyze = system_tool("systemd-analyze");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = unit_in(dir.path(), &dir.path().join("no-such-boardroom"));
    let out = run(Command::new(&analyze).arg("verify").arg(&path));
    assert!(!out.status.success(), "a missing binary passed: {}", text(&out));

    let path = unit_in(dir.path(), &boardroom_exe());
    let unit = std::fs::read_to_string(&path).expect("read").replace("UMask=", "UMsak=");
    std::fs::write(&path, unit).expect("write");
    let out = run(Command::new(&analyze).arg("verify").arg(&path));
    assert!(text(&out).contains("UMsak"), "an unknown key passed: {}", text(&out));
}

#[test]
fn a_refused_config_exits_with_the_status_the_unit_does_not_restart_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("boardroom.toml");
    std::fs::write(&path, MINIMAL.replace("url = \"http://127.0.0.1:8008\"\n", "")).expect("write");
    let out = run(Command::new(boardroom_exe())
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("BOARDROOM_CONFIG")
        .env_remove("BOARDROOM__HOMESERVER__URL"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(read("deploy/boardroom.service").contains("RestartPreventExitStatus=2"));
}

/// `boardroom`'s subcommands, from its `--help`.
fn subcommands() -> BTreeSet<String> {
    let out = run(Command::new(boardroom_exe()).arg("--help"));
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let commands = help.split("Commands:").nth(1).expect("a Commands: section");
    let commands = commands.split("Options:").next().unwrap_or_default();
    commands
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn operations_md_names_only_real_commands_metrics_and_files() {
    let root = project_root();
    let doc = read("docs/operations.md");
    assert!(read("README.md").contains("(docs/operations.md)"), "README links docs/operations.md");

    // `boardroom <subcommand>` in its code blocks is a real subcommand.
    let real = subcommands();
    assert!(real.contains("serve") && real.contains("status"), "{real:?}");
    let mut in_code = false;
    let mut named = BTreeSet::new();
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            let is_binary = pair[0] == "boardroom" || pair[0].ends_with("/boardroom");
            let word = pair[1];
            if is_binary
                && word != "boardroom"
                && word.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                && !word.starts_with('-')
            {
                named.insert(word.to_owned());
            }
        }
    }
    assert!(named.contains("serve") && named.contains("status"), "{named:?}");
    let unknown: Vec<&String> = named.difference(&real).collect();
    assert!(unknown.is_empty(), "docs/operations.md runs unknown subcommands {unknown:?}");

    // Every metric it names is one src/metrics.rs registers.
    let metrics = read("src/metrics.rs");
    let mut rest = doc.as_str();
    let mut seen = 0;
    while let Some(at) = rest.find("boardroom_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        // `boardroom_boardroom-data` is a volume, not a metric.
        if name == "boardroom_" || rest.starts_with('-') {
            continue;
        }
        // A counter is exported with `_total`, a histogram with `_bucket`, `_count`, `_sum`.
        let bare = name.trim_start_matches("boardroom_");
        let registered = ["", "_total", "_bucket", "_count", "_sum"].iter().any(|suffix| {
            bare.strip_suffix(suffix).is_some_and(|b| metrics.contains(&format!("\"{b}\"")))
        });
        assert!(
            registered,
            "docs/operations.md names {name}, which src/metrics.rs does not register"
        );
        seen += 1;
    }
    assert!(seen > 0, "no metric named");

    // Relative links point into the repository, at files that exist.
    let docs = root.join("docs");
    for (i, _) in doc.match_indices("](") {
        let target: String = doc[i + 2..].chars().take_while(|c| *c != ')').collect();
        let target = target.split('#').next().unwrap_or_default();
        if target.is_empty() || target.contains("://") {
            continue;
        }
        let path = docs.join(target);
        assert!(path.exists(), "docs/operations.md links {target}, which does not exist");
        let inside = path.canonicalize().expect("canonical");
        assert!(inside.starts_with(root.canonicalize().expect("root")), "{target} is outside");
    }
    assert!(doc.contains("](../deploy/boardroom.service)"), "the unit is linked");

    // The unit's exposure level, as the test checks it.
    let level = format!("{}.{}", UNIT_EXPOSURE_TENTHS / 10, UNIT_EXPOSURE_TENTHS % 10);
    assert!(doc.contains(&format!("exposure level {level}")), "operations.md states {level}");
}
