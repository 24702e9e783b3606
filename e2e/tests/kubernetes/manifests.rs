//! The manifests of `deploy/kubernetes/` as `kubectl apply -k` sends them:
//! every document of every file its `kustomization.yaml` lists, and what a
//! container's environment resolves to once Kubernetes has filled in the
//! ConfigMap and Secret references and expanded `$(NAME)`.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The folder of the manifests.
pub(crate) fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// `path`'s text; a missing file fails the test with its name.
pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One object, and the file it is in.
#[derive(Debug, Clone)]
pub(crate) struct Object {
    /// Relative to `deploy/kubernetes/`.
    pub(crate) file: String,
    /// The object, as JSON.
    pub(crate) value: Value,
}

impl Object {
    /// Its `kind`.
    pub(crate) fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    /// Its `metadata.name`.
    pub(crate) fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// Its `spec`.
    pub(crate) fn spec(&self) -> &Value {
        &self.value["spec"]
    }
}

/// Every object `kustomization.yaml` applies.
#[derive(Debug, Clone)]
pub(crate) struct Manifests {
    /// In the order of the kustomization's resources, then of the documents.
    pub(crate) objects: Vec<Object>,
}

impl Manifests {
    /// Loads the files listed in `deploy/kubernetes/kustomization.yaml`.
    pub(crate) fn load() -> Self {
        let objects = resources()
            .into_iter()
            .flat_map(|file| documents(&file))
            .collect();
        Self { objects }
    }

    /// Every object of `kind`.
    pub(crate) fn of_kind<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a Object> + 'a {
        let kind = kind.to_owned();
        self.objects.iter().filter(move |o| o.kind() == kind)
    }

    /// The object of `kind` named `name`; its absence fails the test.
    pub(crate) fn get(&self, kind: &str, name: &str) -> &Object {
        self.of_kind(kind)
            .find(|o| o.name() == name)
            .unwrap_or_else(|| panic!("deploy/kubernetes has no {kind} {name:?}"))
    }

    /// The value of `key` in the Secret or ConfigMap `name`.
    pub(crate) fn data(&self, kind: &str, name: &str, key: &str) -> String {
        let object = self.get(kind, name);
        let field = if kind == "Secret" {
            "stringData"
        } else {
            "data"
        };
        object.value[field][key]
            .as_str()
            .unwrap_or_else(|| panic!("{kind} {name} has no {field}.{key}"))
            .to_owned()
    }

    /// The single container of Deployment `name`.
    pub(crate) fn container(&self, name: &str) -> &Value {
        let containers = self.get("Deployment", name).spec()["template"]["spec"]["containers"]
            .as_array()
            .unwrap_or_else(|| panic!("Deployment {name} has no containers"));
        assert_eq!(containers.len(), 1, "Deployment {name}: one container");
        &containers[0]
    }

    /// The environment of Deployment `name`'s container as the process
    /// gets it: `envFrom` ConfigMaps first, then `env` in order, each
    /// `$(NAME)` expanded from the variables defined before it, as the
    /// kubelet does.
    pub(crate) fn environment(&self, name: &str) -> BTreeMap<String, String> {
        let container = self.container(name);
        let mut env = BTreeMap::new();
        for source in container["envFrom"].as_array().into_iter().flatten() {
            let map = source["configMapRef"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: envFrom takes ConfigMaps only"));
            let data = self.get("ConfigMap", map).value["data"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (key, value) in data {
                env.insert(key, value.as_str().unwrap_or_default().to_owned());
            }
        }
        for variable in container["env"].as_array().into_iter().flatten() {
            let key = variable["name"].as_str().expect("an env name").to_owned();
            let value = match (&variable["value"], &variable["valueFrom"]) {
                (Value::String(value), Value::Null) => expand(value, &env),
                (Value::Null, from) => self.value_from(name, from),
                _ => panic!("{name}: {key} has both or neither of value and valueFrom"),
            };
            env.insert(key, value);
        }
        env
    }

    /// The names of the variables Deployment `name` takes from a Secret.
    pub(crate) fn secret_variables(&self, name: &str) -> Vec<String> {
        self.container(name)["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["valueFrom"]["secretKeyRef"].is_object())
            .filter_map(|v| v["name"].as_str().map(str::to_owned))
            .collect()
    }

    fn value_from(&self, deployment: &str, from: &Value) -> String {
        if let Some(reference) = from["secretKeyRef"].as_object() {
            let (secret, key) = (&reference["name"], &reference["key"]);
            self.data("Secret", str_of(secret), str_of(key))
        } else if let Some(reference) = from["configMapKeyRef"].as_object() {
            let (map, key) = (&reference["name"], &reference["key"]);
            self.data("ConfigMap", str_of(map), str_of(key))
        } else {
            panic!("{deployment}: unexpected valueFrom {from}")
        }
    }
}

fn str_of(value: &Value) -> &str {
    value.as_str().expect("a string")
}

/// `value` with each `$(NAME)` of a variable defined before replaced; the
/// kubelet leaves an unknown one as it is, which here fails the test.
pub(crate) fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find(')').expect("a closed $(");
        let name = &after[..end];
        let set = env
            .get(name)
            .unwrap_or_else(|| panic!("{value}: $({name}) is not defined before it"));
        out.push_str(set);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The names `value` refers to as `$(NAME)`.
pub(crate) fn references(value: &str) -> Vec<String> {
    value
        .split("$(")
        .skip(1)
        .filter_map(|part| part.split_once(')').map(|(name, _)| name.to_owned()))
        .collect()
}

/// The files `kustomization.yaml` lists under `resources`, relative.
pub(crate) fn resources() -> Vec<String> {
    let text = read(&folder().join("kustomization.yaml"));
    let kustomization: Value = serde_yaml::from_str(&text).expect("kustomization.yaml is YAML");
    kustomization["resources"]
        .as_array()
        .expect("kustomization.yaml lists resources")
        .iter()
        .map(|r| r.as_str().expect("a file name").to_owned())
        .collect()
}

fn documents(file: &str) -> Vec<Object> {
    let text = read(&folder().join(file));
    serde_yaml::Deserializer::from_str(&text)
        .map(Value::deserialize)
        .filter_map(|value| match value {
            Ok(Value::Null) => None,
            Ok(value) => Some(Object {
                file: file.to_owned(),
                value,
            }),
            Err(e) => panic!("deploy/kubernetes/{file}: {e}"),
        })
        .collect()
}
