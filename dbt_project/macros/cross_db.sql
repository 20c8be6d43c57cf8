{# SQL that differs between the two targets: dbt-duckdb (embedded) and dbt-spark (Spark). #}

{% macro calendar_days(first_date, last_date, source_relation) -%}
    {{ return(adapter.dispatch('calendar_days')(first_date, last_date, source_relation)) }}
{%- endmacro %}

{% macro default__calendar_days(first_date, last_date, source_relation) -%}
    select cast(t.day as date) as day
    from {{ source_relation }}, generate_series({{ first_date }}, {{ last_date }}, interval 1 day) as t(day)
{%- endmacro %}

{% macro spark__calendar_days(first_date, last_date, source_relation) -%}
    select explode(sequence({{ first_date }}, {{ last_date }}, interval 1 day)) as day
    from {{ source_relation }}
{%- endmacro %}

{% macro days_between(start_date, end_date) -%}
    {{ return(adapter.dispatch('days_between')(start_date, end_date)) }}
{%- endmacro %}

{% macro default__days_between(start_date, end_date) -%}
    cast({{ end_date }} - {{ start_date }} as bigint)
{%- endmacro %}

{% macro spark__days_between(start_date, end_date) -%}
    cast(datediff({{ end_date }}, {{ start_date }}) as bigint)
{%- endmacro %}
