{% test label_known_iff_labelled(model, label='returned_within_30d', known_at='label_known_at') %}
select * from {{ model }}
where ({{ label }} is null) != ({{ known_at }} is null)
{% endtest %}
