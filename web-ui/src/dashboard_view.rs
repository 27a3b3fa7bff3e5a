//! The campaign dashboard, for the team's lead: behind the server's admin token (kept in this
//! page's memory only), it shows labels per day and per annotator, prompt-set progress,
//! agreement (Fleiss' kappa, each annotator's agreement with the majority, Cohen's kappa per
//! annotator pair), each version's Bradley–Terry rating with its 95% interval in round
//! order, and each round's training curves (`loss`, `rewards/accuracies`).

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::{CurvePoint, Dashboard};

use crate::server_api;
use crate::svg_plots::{bar_chart, interval_chart, line_chart};

fn figure(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

fn plots(data: &Dashboard) -> AnyView {
    let per_day: Vec<(String, f64)> = data
        .labels_per_day
        .iter()
        .map(|r| (r.day.clone(), r.labels as f64))
        .collect();
    let per_annotator: Vec<(String, f64)> = data
        .labels_per_annotator
        .iter()
        .map(|r| (r.annotator.clone(), r.labels as f64))
        .collect();
    let agreement = &data.agreement;
    let majority: Vec<(String, f64)> = agreement
        .majority
        .iter()
        .filter_map(|(name, m)| Some((name.clone(), m.share()?)))
        .collect();
    let ratings: Vec<(String, f64, f64, f64)> = data
        .versions
        .iter()
        .filter_map(|v| Some((v.version.clone(), v.rating?, v.rating_low?, v.rating_high?)))
        .collect();
    let curves = |metric: fn(&CurvePoint) -> Option<f64>| -> Vec<(String, Vec<(f64, f64)>)> {
        data.training
            .iter()
            .map(|run| {
                let points = run
                    .points
                    .iter()
                    .filter_map(|p| Some((p.step as f64, metric(p)?)))
                    .collect();
                (run.version.clone(), points)
            })
            .collect()
    };
    let prompts = &data.prompts;
    let cohen = agreement.cohen.clone();
    let history = data.history.clone();
    view! {
        <p data-testid="dashboard-summary">
            {format!(
                "{} labels · prompt set: {} of {} prompts complete, {} of {} labels · Fleiss' kappa {} over {} comparisons",
                data.labels,
                prompts.complete,
                prompts.prompts,
                prompts.labels,
                prompts.labels_wanted,
                figure(agreement.fleiss_kappa),
                agreement.fleiss_comparisons,
            )}
        </p>
        <div class="plots">
            {bar_chart("Labels per day", "plot-labels-per-day", per_day, None)}
            {bar_chart("Labels per annotator", "plot-labels-per-annotator", per_annotator, None)}
            {bar_chart("Agreement with the majority", "plot-agreement", majority, Some(1.0))}
            {interval_chart("Rating per version (Bradley–Terry, 95% interval)", "plot-ratings", ratings)}
            {line_chart("Training loss per round", "plot-training-loss", curves(|p| p.loss))}
            {line_chart("rewards/accuracies per round", "plot-training-accuracies", curves(|p| p.rewards_accuracies))}
        </div>
        <table data-testid="cohen-kappa">
            <thead><tr><th>"Annotators"</th><th>"Shared comparisons"</th><th>"Cohen's kappa"</th></tr></thead>
            <tbody>
                {cohen.into_iter().map(|c| view! {
                    <tr>
                        <td>{format!("{} · {}", c.first, c.second)}</td>
                        <td>{c.shared_comparisons.to_string()}</td>
                        <td>{figure(c.kappa)}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
        <table data-testid="version-history">
            <thead><tr><th>"When"</th><th>"Version"</th><th>"Change"</th><th>"Why"</th></tr></thead>
            <tbody>
                {history.into_iter().map(|change| view! {
                    <tr>
                        <td>{change.recorded_at.chars().take(19).collect::<String>()}</td>
                        <td>{change.version}</td>
                        <td>{change.kind.as_str().replace('_', " ")}</td>
                        <td>{change.reason}</td>
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
    let data = RwSignal::new(None::<Dashboard>);
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
