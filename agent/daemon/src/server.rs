//! Talking to the policy server: enrollment, the signed bundle (long-polled, verified), the
//! users, and report batches. HTTPS through `postwarden-transport` (rustls, pinned).

use std::time::Duration;

use postwarden_wire::bundle::{verify_bundle, BundleError};
use postwarden_wire::v1::{
    BatchResponse, BundlePayload, EnrollRequest, EnrollResponse, Problem, ReportBatch, Secret,
    UsersUpdate, ENROLL_PATH, FEATURES_HEADER, FEATURE_PREVIEW, REPORTS_PATH, USERS_PATH,
};
use postwarden_wire::Jwk;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, IF_NONE_MATCH};
use reqwest::StatusCode;
use thiserror::Error;

use crate::state::Enrollment;

pub const BUNDLE_PATH: &str = "/api/v1/bundle";

/// The largest bundle the agent reads (a profile and every user's variables).
pub const MAX_BUNDLE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum ServerError {
    /// No answer: connection refused, TLS (a wrong pin), a time-out.
    #[error("cannot reach {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{url}: {problem}")]
    Refused { url: String, problem: Problem },
    #[error("{url}: the answer is not what the server sends: {message}")]
    Malformed { url: String, message: String },
}

impl ServerError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ServerError::Refused { problem, .. } => Some(problem.status),
            _ => None,
        }
    }

    /// The device's credential was refused (revoked or retired).
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }
}

/// A server connection for an enrolled device.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    credential: Secret,
}

/// What a bundle request brought.
#[derive(Debug)]
pub enum Fetched {
    /// The bundle the agent has is current.
    NotModified,
    /// A bundle, as the server sent it (not yet verified).
    Bundle(String),
}

fn url(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

async fn problem_of(url: &str, response: reqwest::Response) -> ServerError {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let problem = serde_json::from_str::<Problem>(&text).unwrap_or_else(|_| {
        Problem::new(
            status.as_u16(),
            status.canonical_reason().unwrap_or("error"),
            text.chars().take(500).collect::<String>(),
        )
    });
    ServerError::Refused {
        url: url.to_owned(),
        problem,
    }
}

fn unreachable(url: &str) -> impl FnOnce(reqwest::Error) -> ServerError + '_ {
    move |source| ServerError::Unreachable {
        url: url.to_owned(),
        source,
    }
}

/// `POST /api/v1/enroll` with a one-time enrollment token.
pub async fn enroll(
    http: &reqwest::Client,
    base: &str,
    request: &EnrollRequest,
) -> Result<EnrollResponse, ServerError> {
    let url = url(base, ENROLL_PATH);
    let response = http
        .post(&url)
        .json(request)
        .send()
        .await
        .map_err(unreachable(&url))?;
    if response.status() != StatusCode::CREATED {
        return Err(problem_of(&url, response).await);
    }
    response
        .json::<EnrollResponse>()
        .await
        .map_err(|e| ServerError::Malformed {
            url,
            message: e.to_string(),
        })
}

impl Api {
    pub fn new(http: reqwest::Client, enrollment: &Enrollment) -> Api {
        Api {
            http,
            base: enrollment.server.clone(),
            credential: enrollment.credential.clone(),
        }
    }

    fn auth(&self) -> HeaderValue {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.credential.expose()))
            .expect("a credential is a header value");
        v.set_sensitive(true);
        v
    }

    /// `GET /api/v1/bundle`, conditional on `have` (the serial of the cached bundle), waiting up
    /// to `wait` for a change.
    pub async fn bundle(&self, have: Option<u64>, wait: Duration) -> Result<Fetched, ServerError> {
        let url = url(
            &self.base,
            &format!("{BUNDLE_PATH}?wait={}", wait.as_secs()),
        );
        // This agent reads a staged rollout's preview (a server that does not know the
        // header ignores it; one that does sends the preview to agents that name it only).
        let mut request = self
            .http
            .get(&url)
            .header(AUTHORIZATION, self.auth())
            .header(FEATURES_HEADER, FEATURE_PREVIEW)
            .timeout(wait + Duration::from_secs(30));
        if let Some(serial) = have {
            request = request.header(IF_NONE_MATCH, format!("\"{serial}\""));
        }
        let response = request.send().await.map_err(unreachable(&url))?;
        match response.status() {
            StatusCode::NOT_MODIFIED => Ok(Fetched::NotModified),
            StatusCode::OK => {
                if response
                    .content_length()
                    .is_some_and(|n| n > MAX_BUNDLE_BYTES as u64)
                {
                    return Err(ServerError::Malformed {
                        url,
                        message: format!("the bundle is larger than {MAX_BUNDLE_BYTES} bytes"),
                    });
                }
                let bytes = read_bounded(response, MAX_BUNDLE_BYTES)
                    .await
                    .map_err(|message| ServerError::Malformed {
                        url: url.clone(),
                        message,
                    })?;
                String::from_utf8(bytes)
                    .map(Fetched::Bundle)
                    .map_err(|_| ServerError::Malformed {
                        url,
                        message: "the bundle is not UTF-8 text".to_owned(),
                    })
            }
            _ => Err(problem_of(&url, response).await),
        }
    }

    /// `POST /api/v1/users`.
    pub async fn users(&self, users: &[String]) -> Result<(), ServerError> {
        let url = url(&self.base, USERS_PATH);
        let response = self
            .http
            .post(&url)
            .header(AUTHORIZATION, self.auth())
            .json(&UsersUpdate {
                users: users.to_vec(),
            })
            .send()
            .await
            .map_err(unreachable(&url))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(problem_of(&url, response).await)
        }
    }

    /// `POST /api/v1/reports`.
    pub async fn reports(&self, batch: &ReportBatch) -> Result<BatchResponse, ServerError> {
        let url = url(&self.base, REPORTS_PATH);
        let body = serde_json::to_vec(batch).expect("a batch serializes");
        let response = self
            .http
            .post(&url)
            .header(AUTHORIZATION, self.auth())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(unreachable(&url))?;
        if response.status() != StatusCode::OK {
            return Err(problem_of(&url, response).await);
        }
        response
            .json::<BatchResponse>()
            .await
            .map_err(|e| ServerError::Malformed {
                url,
                message: e.to_string(),
            })
    }
}

async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Why a bundle was not taken.
#[derive(Debug, Error)]
pub enum Refusal {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("bundle serial {serial} has other content than the cached bundle of the same serial")]
    SameSerialOtherContent { serial: u64 },
}

/// Verifies a bundle for this device against the pinned key; `cached` is the bundle the agent
/// enforces now: a lower serial is refused, and so is the same serial with other content (the
/// server raises the serial with every change; the same content signed again is fine).
pub fn verify(
    compact: &str,
    key: &Jwk,
    device: &str,
    cached: Option<&BundlePayload>,
) -> Result<BundlePayload, Refusal> {
    let payload = verify_bundle(compact, key, device, cached.map(|c| c.serial))?;
    if let Some(c) = cached {
        if payload.serial == c.serial
            && (payload.profile != c.profile
                || payload.variables != c.variables
                || payload.preview != c.preview)
        {
            return Err(Refusal::SameSerialOtherContent {
                serial: payload.serial,
            });
        }
    }
    Ok(payload)
}
