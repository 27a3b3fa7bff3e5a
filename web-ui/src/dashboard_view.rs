//! The campaign dashboard, for the team's lead: behind the server's admin token (kept in this
//! page's memory only), it shows labels per day and per annotator, prompt-set progress,
//! agreement (Fleiss' kappa, each annotator's agreement with the majority, Cohen's kappa per
//! annotator pair), each version's Bradley–Terry rating with its 95% interval in round
//! order, and each round's training curves (`loss`, `rewards/accuracies`).

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;

use crate::server_api;
use crate::svg_plots::{bar_chart, interval_chart, line_chart};

fn number(value: &Value) -> Option<f64> {
    value.as_f64()
}

fn figure(value: &Value) -> String {
    number(value).map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

fn plots(data: &Value) -> AnyView {
    let rows = |key: &str| data[key].as_array().cloned().unwrap_or_default();
    let per_day: Vec<(String, f64)> = rows("labels_per_day")
        .iter()
        .map(|r| {
            (
                r["day"].as_str().unwrap_or("").to_string(),
                number(&r["labels"]).unwrap_or(0.0),
            )
        })
        .collect();
    let per_annotator: Vec<(String, f64)> = rows("labels_per_annotator")
        .iter()
        .map(|r| {
            (
                r["annotator"].as_str().unwrap_or("").to_string(),
                number(&r["labels"]).unwrap_or(0.0),
            )
        })
        .collect();
    let agreement = &data["agreement"];
    let majority: Vec<(String, f64)> = agreement["majority"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, m)| {
            let compared = number(&m["compared"])?;
            (compared > 0.0).then(|| {
                (
                    name.clone(),
                    number(&m["agreeing"]).unwrap_or(0.0) / compared,
                )
            })
        })
        .collect();
    let ratings: Vec<(String, f64, f64, f64)> = rows("versions")
        .iter()
        .filter_map(|v| {
            Some((
                v["version"].as_str()?.to_string(),
                number(&v["rating"])?,
                number(&v["rating_low"])?,
                number(&v["rating_high"])?,
            ))
        })
        .collect();
    let curves = |metric: &str| -> Vec<(String, Vec<(f64, f64)>)> {
        rows("training")
            .iter()
            .map(|run| {
                let points = run["points"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| Some((number(&p["step"])?, number(&p[metric])?)))
                    .collect();
                (run["version"].as_str().unwrap_or("").to_string(), points)
            })
            .collect()
    };
    let prompts = &data["prompts"];
    let cohen = agreement["cohen"].as_array().cloned().unwrap_or_default();
    view! {
        <p data-testid="dashboard-summary">
            {format!(
                "{} labels · prompt set: {} of {} prompts complete, {} of {} labels · Fleiss' kappa {} over {} comparisons",
                data["labels"],
                prompts["complete"],
                prompts["prompts"],
                prompts["labels"],
                prompts["labels_wanted"],
                figure(&agreement["fleiss_kappa"]),
                agreement["fleiss_comparisons"],
            )}
        </p>
        <div class="plots">
            {bar_chart("Labels per day", "plot-labels-per-day", per_day, None)}
            {bar_chart("Labels per annotator", "plot-labels-per-annotator", per_annotator, None)}
            {bar_chart("Agreement with the majority", "plot-agreement", majority, Some(1.0))}
            {interval_chart("Rating per version (Bradley–Terry, 95% interval)", "plot-ratings", ratings)}
            {line_chart("Training loss per round", "plot-training-loss", curves("loss"))}
            {line_chart("rewards/accuracies per round", "plot-training-accuracies", curves("rewards/accuracies"))}
        </div>
        <table data-testid="cohen-kappa">
            <thead><tr><th>"Annotators"</th><th>"Shared comparisons"</th><th>"Cohen's kappa"</th></tr></thead>
            <tbody>
                {cohen.into_iter().map(|c| view! {
                    <tr>
                        <td>{format!("{} · {}", c["first"].as_str().unwrap_or(""), c["second"].as_str().unwrap_or(""))}</td>
                        <td>{c["shared_comparisons"].to_string()}</td>
                        <td>{figure(&c["kappa"])}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[component]
pub fn DashboardView() -> impl IntoView {
    let token = RwSignal::new(String::new());
    let data = RwSignal::new(None::<Value>);
    let error = RwSignal::new(None::<String>);
    let open = move || {
        let admin = token.get_untracked();
        error.set(None);
        spawn_local(async move {
            match server_api::dashboard(admin.trim()).await {
                Ok(figures) => data.set(Some(figures)),
                Err(problem) => error.set(Some(problem)),
            }
        });
    };
    view! {
        <section class="dashboard">
            <div class="row">
                <label class="field">
                    <span>"Admin token (dpo serve --admin-token)"</span>
                    <input
                        type="password"
                        data-testid="admin-token"
                        autocomplete="off"
                        prop:value=move || token.get()
                        on:input=move |ev| token.set(event_target_value(&ev))
                        on:keydown=move |ev| if ev.key() == "Enter" { open() }
                    />
                </label>
                <button data-testid="open-dashboard" on:click=move |_| open()>"Show the dashboard"</button>
            </div>
            {move || error.get().map(|e| view! { <div class="error" role="alert" data-testid="dashboard-error">{e}</div> })}
            {move || data.get().map(|figures| plots(&figures))}
        </section>
    }
}
