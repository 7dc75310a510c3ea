//! Getting a server ready for a run: the profile, the group, an enrollment token, N enrolled
//! agents, and each agent's current bundle serial (its ETag). Every step may be repeated
//! against the same server: an identical profile upload answers 200, a group assignment is a
//! put, and each run enrolls its own agents unless `--agents-file` names earlier ones.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, ETAG};
use reqwest::{Client, StatusCode};
use serde::{Deserialize, Serialize};

use postwarden_transport::Trust;
use postwarden_wire::v1::{EnrollRequest, EnrollResponse, Secret, ENROLL_PATH};

/// Where the server is and how to trust it: its `--ready-file`.
#[derive(Debug, Clone, Deserialize)]
pub struct Target {
    pub url: String,
    /// `sha256//BASE64` of the server certificate's public key.
    pub pin_sha256: String,
}

impl Target {
    pub fn read(path: &Path) -> Result<Target> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the ready file {}", path.display()))?;
        let target: Target = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a server ready file", path.display()))?;
        if !target.url.starts_with("https://") {
            bail!(
                "{}: the server listens on {}; the benchmark measures HTTPS, as agents use it",
                path.display(),
                target.url
            );
        }
        Ok(target)
    }

    pub fn trust(&self) -> Trust {
        Trust::Pins(vec![self.pin_sha256.clone()])
    }
}

/// An enrolled device as the generator keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enrolled {
    pub device_id: String,
    pub credential: String,
}

/// `--agents-file`: devices enrolled by an earlier run against the server at `url`.
#[derive(Debug, Serialize, Deserialize)]
struct AgentsFile {
    url: String,
    agents: Vec<Enrolled>,
}

/// A simulated agent, its request headers prepared once.
#[derive(Debug, Clone)]
pub struct Agent {
    /// `Bearer <credential>`.
    pub authorization: HeaderValue,
    /// `"SERIAL"` of the bundle it has.
    pub etag: HeaderValue,
}

impl Agent {
    pub fn new(credential: &str, etag: &str) -> Result<Agent> {
        let mut authorization = HeaderValue::from_str(&format!("Bearer {credential}"))
            .context("a credential that is not header text")?;
        authorization.set_sensitive(true);
        Ok(Agent {
            authorization,
            etag: HeaderValue::from_str(etag).context("an ETag that is not header text")?,
        })
    }
}

/// What the setup needs to know.
#[derive(Debug, Clone)]
pub struct Setup<'a> {
    pub admin_token: &'a str,
    pub agents: usize,
    pub group: &'a str,
    pub users: Vec<String>,
    pub concurrency: usize,
    pub agents_file: Option<&'a Path>,
}

/// The profile the run assigns: the built-in baseline, uploaded as its TOML text.
pub fn baseline_toml() -> &'static str {
    postwarden_profiles::builtin::BUILTIN
        .iter()
        .find(|(id, _)| *id == "bsi-m5.57")
        .map(|(_, text)| *text)
        .expect("the BSI baseline is built in")
}

/// Prepares the server and returns `setup.agents` agents that know their bundle's ETag.
pub async fn prepare(
    client: &Client,
    target: &Target,
    profile: &postwarden_profiles::Profile,
    setup: &Setup<'_>,
) -> Result<Vec<Agent>> {
    let enrolled = match setup.agents_file.map(|p| load_agents(p, &target.url)) {
        Some(Ok(Some(agents))) if agents.len() >= setup.agents => {
            eprintln!(
                "loadgen: reusing {} agents from {}",
                setup.agents,
                setup.agents_file.expect("checked").display()
            );
            agents.into_iter().take(setup.agents).collect()
        }
        Some(Err(e)) => return Err(e),
        _ => {
            assign_profile(client, target, profile, setup).await?;
            let enrolled = enroll_all(client, target, setup).await?;
            if let Some(path) = setup.agents_file {
                save_agents(path, &target.url, &enrolled)?;
            }
            enrolled
        }
    };
    learn_etags(client, target, &enrolled, setup.concurrency).await
}

async fn admin_call(
    what: &str,
    request: reqwest::RequestBuilder,
    token: &str,
    ok: &[StatusCode],
) -> Result<serde_json::Value> {
    let response = request
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("{what}: no answer"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !ok.contains(&status) {
        bail!("{what}: {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("{what}: the answer is not JSON: {body}"))
}

async fn assign_profile(
    client: &Client,
    target: &Target,
    profile: &postwarden_profiles::Profile,
    setup: &Setup<'_>,
) -> Result<()> {
    let url = &target.url;
    admin_call(
        "uploading the profile",
        client
            .post(format!("{url}/api/v1/profiles"))
            .header(CONTENT_TYPE, "application/toml")
            .body(baseline_toml()),
        setup.admin_token,
        &[StatusCode::OK, StatusCode::CREATED],
    )
    .await?;
    admin_call(
        "assigning the group",
        client
            .put(format!("{url}/api/v1/groups/{}", setup.group))
            .json(&serde_json::json!({
                "profile": profile.id.0,
                "version": profile.version.0,
            })),
        setup.admin_token,
        &[StatusCode::OK, StatusCode::CREATED],
    )
    .await?;
    Ok(())
}

/// The most uses one enrollment token may have (the server's limit).
const MAX_TOKEN_USES: usize = 100_000;

async fn enroll_all(client: &Client, target: &Target, setup: &Setup<'_>) -> Result<Vec<Enrolled>> {
    let mut tokens = Vec::new();
    let mut left = setup.agents;
    while left > 0 {
        let uses = left.min(MAX_TOKEN_USES);
        let created = admin_call(
            "creating an enrollment token",
            client
                .post(format!("{}/api/v1/enrollment-tokens", target.url))
                .json(&serde_json::json!({
                    "group": setup.group, "uses": uses, "expires_in_s": 86_400,
                })),
            setup.admin_token,
            &[StatusCode::CREATED, StatusCode::OK],
        )
        .await?;
        let token = created["token"]
            .as_str()
            .context("the enrollment token answer has no `token`")?
            .to_owned();
        tokens.extend(std::iter::repeat_n(token, uses));
        left -= uses;
    }
    let started = std::time::Instant::now();
    let tokens = Arc::new(tokens);
    let url = format!("{}{ENROLL_PATH}", target.url);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..setup.concurrency.max(1) {
        let (client, tokens, url, next) =
            (client.clone(), tokens.clone(), url.clone(), next.clone());
        let users = setup.users.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(token) = tokens.get(i) else {
                    return Ok::<_, anyhow::Error>(mine);
                };
                let request = EnrollRequest {
                    token: Secret::new(token.clone()),
                    hostname: format!("loadgen-{i}"),
                    os: "linux".to_owned(),
                    agent_version: concat!("loadgen/", env!("CARGO_PKG_VERSION")).to_owned(),
                    users: users.clone(),
                };
                let response = client
                    .post(&url)
                    .json(&request)
                    .send()
                    .await
                    .context("enrolling: no answer")?;
                let status = response.status();
                if status == StatusCode::TOO_MANY_REQUESTS {
                    bail!(
                        "enrolling: 429: the server rate-limits enrollment per address; start \
                         it with `--enroll-rate 1000000` for a benchmark"
                    );
                }
                if status != StatusCode::CREATED {
                    let body = response.text().await.unwrap_or_default();
                    bail!("enrolling agent {i}: {status}: {body}");
                }
                let answer: EnrollResponse = response
                    .json()
                    .await
                    .context("enrolling: the answer is not an enrollment response")?;
                mine.push((
                    i,
                    Enrolled {
                        device_id: answer.device_id.0,
                        credential: answer.credential.expose().to_owned(),
                    },
                ));
            }
        }));
    }
    let mut all = Vec::with_capacity(setup.agents);
    for task in tasks {
        all.extend(task.await.context("an enrollment task panicked")??);
    }
    all.sort_by_key(|(i, _)| *i);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "loadgen: enrolled {} agents in {secs:.1} s ({:.0}/s)",
        all.len(),
        all.len() as f64 / secs.max(1e-9)
    );
    Ok(all.into_iter().map(|(_, e)| e).collect())
}

/// Fetches every agent's bundle once (`200`) and keeps its ETag, as an agent that has its
/// bundle would. This also fills the server's bundle cache: the run measures the steady state.
async fn learn_etags(
    client: &Client,
    target: &Target,
    enrolled: &[Enrolled],
    concurrency: usize,
) -> Result<Vec<Agent>> {
    let url = format!("{}/api/v1/bundle", target.url);
    let enrolled = Arc::new(enrolled.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, url, next, enrolled) =
            (client.clone(), url.clone(), next.clone(), enrolled.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(agent) = enrolled.get(i) else {
                    return Ok::<_, anyhow::Error>(mine);
                };
                let response = client
                    .get(&url)
                    .header(AUTHORIZATION, format!("Bearer {}", agent.credential))
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .context("fetching a bundle: no answer")?;
                let status = response.status();
                let etag = response
                    .headers()
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = response.bytes().await.unwrap_or_default();
                let Some(etag) = etag.filter(|_| status == StatusCode::OK) else {
                    bail!(
                        "fetching the bundle of {}: {status} without an ETag: {}",
                        agent.device_id,
                        String::from_utf8_lossy(&body)
                    );
                };
                mine.push((i, Agent::new(&agent.credential, &etag)?));
            }
        }));
    }
    let mut all = Vec::with_capacity(enrolled.len());
    for task in tasks {
        all.extend(task.await.context("a bundle task panicked")??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, a)| a).collect())
}

/// The agents of `path` if it was written for the server at `url`; `None` if there is no file
/// or it names another server.
fn load_agents(path: &Path, url: &str) -> Result<Option<Vec<Enrolled>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let file: AgentsFile = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a loadgen agents file", path.display()))?;
    Ok((file.url == url).then_some(file.agents))
}

fn save_agents(path: &Path, url: &str, agents: &[Enrolled]) -> Result<()> {
    use std::io::Write as _;
    let file = AgentsFile {
        url: url.to_owned(),
        agents: agents.to_vec(),
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    // Device credentials: readable by the owner only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    out.write_all(serde_json::to_string(&file)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Agents for the ceiling server, which checks only that a credential is present: credentials
/// of the real shape and length, and serial 1.
pub fn fake_agents(n: usize) -> Result<Vec<Agent>> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    (0..n)
        .map(|i| {
            let credential = format!(
                "pwd_{}",
                URL_SAFE_NO_PAD.encode(Sha256::digest(format!("loadgen-{i}")))
            );
            Agent::new(&credential, "\"1\"")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_agents_have_credentials_of_the_real_shape() {
        let agents = fake_agents(3).unwrap();
        assert_eq!(agents.len(), 3);
        let auth = agents[0].authorization.to_str().unwrap();
        let credential = auth.strip_prefix("Bearer pwd_").unwrap();
        assert_eq!(credential.len(), 43);
        assert!(agents[0].authorization.is_sensitive());
        assert_ne!(agents[0].authorization, agents[1].authorization);
        assert_eq!(agents[2].etag, "\"1\"");
    }

    #[test]
    fn an_agents_file_is_used_only_for_its_server() {
        let dir = std::env::temp_dir().join(format!("loadgen-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agents.json");
        assert!(load_agents(&path, "https://a").unwrap().is_none());
        let agents = vec![Enrolled {
            device_id: "dev_x".into(),
            credential: "pwd_y".into(),
        }];
        save_agents(&path, "https://a", &agents).unwrap();
        assert_eq!(load_agents(&path, "https://a").unwrap().unwrap().len(), 1);
        assert!(load_agents(&path, "https://b").unwrap().is_none());
        std::fs::write(&path, "{").unwrap();
        assert!(load_agents(&path, "https://a").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_baseline_is_the_builtin_profile() {
        assert!(baseline_toml().contains("id = \"bsi-m5.57\""));
    }
}
