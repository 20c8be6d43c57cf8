{% test label_known_iff_labelled(model) %}
select * from {{ model }}
where (returned_within_30d is null) != (label_known_at is null)
{% endtest %}
