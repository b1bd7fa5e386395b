//! A pipeline resolved: every component of the run built once, each carrying its name, its
//! `type` and its table, with the typed framework tables (`[costs]`) read. Sources, training
//! seeds and sweeps are transformations of this value, never TOML rewritten to disk.

use crate::cost::CostSettings;
use crate::error::{Result, ResultExt as _, bail};
use rgd_core::pipeline::{DataSpec, Located, TrainSpec};
use rgd_core::{Context, Filter, Generator, Pipeline, Registry, Router};

/// A built component with where it came from.
#[derive(Debug)]
pub struct Named<T> {
    /// Its key in the pipeline (`[routers.NAME]`).
    pub name: String,
    /// Its `type`.
    pub type_name: String,
    /// Its table as written.
    pub spec: Located,
    /// The component.
    pub value: T,
}

/// The `type` of a component table (`?` when absent: building it has failed already).
pub fn type_of(l: &Located) -> String {
    l.table
        .get("type")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string()
}

/// A pipeline with its registry (built-ins plus its `plugins = [...]` libraries) and its
/// components built.
#[derive(Debug)]
pub struct Resolved {
    /// The pipeline as parsed.
    pub pipeline: Pipeline,
    /// The registry its components came from.
    pub registry: Registry,
    /// `[routers.NAME]`, in file order.
    pub routers: Vec<Named<Box<dyn Router>>>,
    /// `[filters.NAME]`, in file order.
    pub filters: Vec<Named<Box<dyn Filter>>>,
    /// `[generate.generator]`, when the training questions are generated.
    pub generator: Option<Box<dyn Generator>>,
    /// `[costs]`, typed.
    pub costs: Option<CostSettings>,
    /// The run's context (base folder, seed).
    pub ctx: Context,
}

/// The registry plus the pipeline's `plugins = [...]` libraries (those not loaded yet).
pub fn with_plugins(registry: &Registry, pipeline: &Pipeline) -> Result<Registry> {
    let mut r = registry.clone();
    for p in &pipeline.plugins {
        if !rgd_dylib::is_loaded(&r, p) {
            rgd_dylib::load(p, &mut r)
                .with_context(|| format!("{}: plugins", pipeline.path.display()))?;
        }
    }
    Ok(r)
}

impl Resolved {
    /// Load the pipeline's plugins and build each router, filter and the `[costs]` settings.
    pub fn new(registry: &Registry, pipeline: Pipeline, quiet: bool) -> Result<Resolved> {
        let registry = with_plugins(registry, &pipeline)?;
        let built = pipeline.build(&registry, quiet)?;
        let named = |specs: &[(String, Located)]| {
            specs
                .iter()
                .map(|(n, l)| (n.clone(), type_of(l), l.clone()))
                .collect::<Vec<_>>()
        };
        let routers = named(&pipeline.routers)
            .into_iter()
            .zip(built.routers)
            .map(|((name, type_name, spec), (built_name, value))| {
                debug_assert_eq!(name, built_name);
                Named {
                    name,
                    type_name,
                    spec,
                    value,
                }
            })
            .collect();
        let filters = named(&pipeline.filters)
            .into_iter()
            .zip(built.filters)
            .map(|((name, type_name, spec), (_, value))| Named {
                name,
                type_name,
                spec,
                value,
            })
            .collect();
        // built before any data loads, so a wrong generator fails first
        let generator = match &pipeline.data {
            DataSpec::Answered {
                train: TrainSpec::Generated(g),
                ..
            } => Some(registry.build_generator(g.generator.table.clone(), &g.generator.context)?),
            _ => None,
        };
        let costs = pipeline
            .costs
            .as_ref()
            .map(|l| CostSettings::parse(&l.table, &l.context))
            .transpose()?;
        Ok(Resolved {
            generator,
            routers,
            filters,
            costs,
            ctx: built.ctx,
            registry,
            pipeline,
        })
    }

    /// Parse the pipeline file and resolve it.
    pub fn from_file(registry: &Registry, path: &std::path::Path, quiet: bool) -> Result<Resolved> {
        Resolved::new(registry, Pipeline::from_file(path)?, quiet)
    }

    /// Parse a pipeline from TOML text; relative paths resolve against `base_dir`.
    pub fn from_toml(
        registry: &Registry,
        text: &str,
        base_dir: &std::path::Path,
        quiet: bool,
    ) -> Result<Resolved> {
        let p = Pipeline::parse(text, &base_dir.join("pipeline.toml"), base_dir)?;
        Resolved::new(registry, p, quiet)
    }

    /// A pipeline file with its pool cut to `models` (any subset of the models its data has):
    /// `[data] models` becomes that list and `[costs]` is dropped; with
    /// `routers`, only the routers of those `type`s run. For "which pool lets routing pay?"
    /// over a response matrix that holds more models than one pipeline uses.
    pub fn from_file_with_pool(
        registry: &Registry,
        path: &std::path::Path,
        models: &[String],
        routers: &[String],
        quiet: bool,
    ) -> Result<Resolved> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
        let mut t: toml::Table = toml::from_str(&text)
            .map_err(|e| crate::Error::Invalid(format!("{}: {e}", path.display())))?;
        let bad = |msg: &str| crate::Error::Invalid(format!("{}: {msg}", path.display()));
        let data = t
            .get_mut("data")
            .and_then(|d| d.as_table_mut())
            .ok_or_else(|| bad("a pool can be chosen only for a pipeline with a [data] table"))?;
        data.insert(
            "models".into(),
            toml::Value::Array(models.iter().map(|m| m.as_str().into()).collect()),
        );
        // the pool table compares accuracy; a pool's costs are another question
        t.remove("costs");
        if !routers.is_empty() {
            let table = t
                .get_mut("routers")
                .and_then(|r| r.as_table_mut())
                .ok_or_else(|| bad("the pipeline has no [routers.NAME] table"))?;
            table.retain(|_, r| {
                r.get("type")
                    .and_then(|ty| ty.as_str())
                    .is_some_and(|ty| routers.iter().any(|x| x == ty))
            });
        }
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        let text = toml::to_string(&t).map_err(|e| bad(&e.to_string()))?;
        let p = Pipeline::parse(&text, path, base)?;
        Resolved::new(registry, p, quiet)
    }

    /// The filters' names.
    pub fn filter_names(&self) -> Vec<String> {
        self.filters.iter().map(|f| f.name.clone()).collect()
    }

    /// This resolved pipeline with a router retrained under another seed (its `seed` field).
    pub fn router_with_seed(
        &self,
        r: &Named<Box<dyn Router>>,
        seed: u64,
    ) -> Result<Box<dyn Router>> {
        let mut t = r.spec.table.clone();
        t.insert("seed".into(), toml::Value::Integer(seed as i64));
        Ok(self.registry.build_router(t, &r.spec.context)?)
    }

    /// Whether a router's type has a `seed` field (it is retrained per training seed).
    pub fn is_seeded(&self, r: &Named<Box<dyn Router>>) -> bool {
        self.registry
            .get(rgd_core::Kind::Router, &r.type_name)
            .is_some_and(|e| e.fields.iter().any(|f| f.name == "seed"))
    }

    /// Check names that refer to other tables.
    pub fn check(&self) -> Result<()> {
        if let Some(reference) = &self.pipeline.reference_source
            && reference != "main"
            && !self.pipeline.sources.iter().any(|(n, _)| n == reference)
        {
            bail!(
                "{}: reference_source = \"{reference}\" is not a source (sources: main{})",
                self.pipeline.path.display(),
                self.pipeline
                    .sources
                    .iter()
                    .map(|(n, _)| format!(", {n}"))
                    .collect::<String>()
            );
        }
        Ok(())
    }
}
