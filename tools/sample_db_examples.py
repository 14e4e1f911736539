"""Verified question → SQL examples for the bundled sample database (`keel.tools.sample_db`).

Written by hand from the TUNING half of the generalisation eval (`keel.evals.generalisation`,
`half == "tuning"`), one or two per template, never from a held-back question. Each names
the tuning question it answers (`source`), and a test runs every query over the sample
database of `WRITTEN_ON` and compares its result with that question's truth, computed in
Python, so the examples are right by construction. A data module rather than a JSON file so
the examples ship inside the package; a user's own examples are a JSON file
(`KEEL_SQL__EXAMPLES`, see `keel.tools.sql_examples`).

Relative periods ("last month", "the last 30 days") are written as the ISO bounds of
`WRITTEN_ON`: the query prompt shows each example with the date bounds of its own question,
as it shows the asked question with its own, so the model copies bounds, not these days.
"""

from __future__ import annotations

from datetime import date

from keel.tools.sql_examples import SqlExample

__all__ = ["SAMPLE_DB_EXAMPLES", "WRITTEN_ON"]

WRITTEN_ON = date(2026, 12, 6)
"""The day relative periods of the examples were counted from (the sample's `today`)."""

_REVENUE = "SUM(oi.quantity * oi.unit_price)"


def _x(source: str, question: str, sql: str) -> SqlExample:
    return SqlExample(question=question, sql=" ".join(sql.split()), source=source)


SAMPLE_DB_EXAMPLES: tuple[SqlExample, ...] = (
    # --- count
    _x(
        "count.customers_country.4",
        "How many customers are from the country CA?",
        "SELECT COUNT(*) AS customers FROM customers WHERE country = 'CA';",
    ),
    _x(
        "count.products_category.2",
        "How many products are in the Software category?",
        "SELECT COUNT(*) AS products FROM products WHERE category = 'Software';",
    ),
    _x(
        "count.orders_status_month.2",
        "How many cancelled orders were there in April 2026?",
        """SELECT COUNT(*) AS orders FROM orders WHERE status = 'cancelled'
        AND order_date >= '2026-04-01' AND order_date < '2026-05-01';""",
    ),
    _x(
        "count.signups_month.1",
        "How many customers signed up (customers.created_at) in January 2026?",
        """SELECT COUNT(*) AS customers FROM customers
        WHERE created_at >= '2026-01-01' AND created_at < '2026-02-01';""",
    ),
    # --- sum
    _x(
        "sum.revenue_month.4",
        "What was the total revenue in July 2026?",
        f"""SELECT ROUND({_REVENUE}, 2) AS revenue FROM order_items oi
        JOIN orders o ON o.id = oi.order_id WHERE o.status = 'completed'
        AND o.order_date >= '2026-07-01' AND o.order_date < '2026-08-01';""",
    ),
    _x(
        "sum.revenue_month.1",
        "What was the total revenue last month?",
        f"""SELECT ROUND({_REVENUE}, 2) AS revenue FROM order_items oi
        JOIN orders o ON o.id = oi.order_id WHERE o.status = 'completed'
        AND o.order_date >= '2026-11-01' AND o.order_date < '2026-12-01';""",
    ),
    _x(
        "sum.units_product_month.2",
        "How many units of 'USB-C Cable Pro' were sold in completed orders in June 2026?",
        """SELECT SUM(oi.quantity) AS units FROM order_items oi
        JOIN orders o ON o.id = oi.order_id JOIN products p ON p.id = oi.product_id
        WHERE p.name = 'USB-C Cable Pro' AND o.status = 'completed'
        AND o.order_date >= '2026-06-01' AND o.order_date < '2026-07-01';""",
    ),
    _x(
        "sum.revenue_category_month.3",
        "What was the revenue of the Accessories category in August 2026?",
        f"""SELECT ROUND({_REVENUE}, 2) AS revenue FROM order_items oi
        JOIN orders o ON o.id = oi.order_id JOIN products p ON p.id = oi.product_id
        WHERE p.category = 'Accessories' AND o.status = 'completed'
        AND o.order_date >= '2026-08-01' AND o.order_date < '2026-09-01';""",
    ),
    # --- average
    _x(
        "average.avg_price_category.2",
        "What is the average list price of the products in the Services category?",
        """SELECT ROUND(AVG(unit_price), 2) AS average_price FROM products
        WHERE category = 'Services';""",
    ),
    _x(
        "average.avg_order_value_month.1",
        "What was the average order value (revenue per completed order) of the orders placed "
        "in April 2026?",
        f"""SELECT ROUND({_REVENUE} / COUNT(DISTINCT o.id), 2) AS average_order_value
        FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE o.status = 'completed'
        AND o.order_date >= '2026-04-01' AND o.order_date < '2026-05-01';""",
    ),
    _x(
        "average.avg_quantity_product.2",
        "On average, how many units of 'Backup Tool Basic' does an order line of a completed "
        "order hold (all time)?",
        """SELECT ROUND(AVG(oi.quantity), 2) AS average_units FROM order_items oi
        JOIN orders o ON o.id = oi.order_id JOIN products p ON p.id = oi.product_id
        WHERE p.name = 'Backup Tool Basic' AND o.status = 'completed';""",
    ),
    # --- top_n
    _x(
        "top_n.top_products_revenue.2",
        "Which 3 products had the highest revenue in July 2026? List them from the highest.",
        f"""SELECT p.name, ROUND({_REVENUE}, 2) AS revenue FROM order_items oi
        JOIN orders o ON o.id = oi.order_id JOIN products p ON p.id = oi.product_id
        WHERE o.status = 'completed'
        AND o.order_date >= '2026-07-01' AND o.order_date < '2026-08-01'
        GROUP BY p.name ORDER BY revenue DESC LIMIT 3;""",
    ),
    _x(
        "top_n.top_customers_spend.3",
        "Which 3 customers spent the most (revenue of their completed orders) in August 2026? "
        "Give their email addresses, from the highest.",
        f"""SELECT c.email, ROUND({_REVENUE}, 2) AS spent FROM order_items oi
        JOIN orders o ON o.id = oi.order_id JOIN customers c ON c.id = o.customer_id
        WHERE o.status = 'completed'
        AND o.order_date >= '2026-08-01' AND o.order_date < '2026-09-01'
        GROUP BY c.email ORDER BY spent DESC LIMIT 3;""",
    ),
    _x(
        "top_n.top_categories_units.2",
        "Which 2 product categories sold the most units in completed orders in August 2026? "
        "Most first.",
        """SELECT p.category, SUM(oi.quantity) AS units FROM order_items oi
        JOIN orders o ON o.id = oi.order_id JOIN products p ON p.id = oi.product_id
        WHERE o.status = 'completed'
        AND o.order_date >= '2026-08-01' AND o.order_date < '2026-09-01'
        GROUP BY p.category ORDER BY units DESC LIMIT 2;""",
    ),
    # --- extremes
    _x(
        "extremes.cheapest_category.4",
        "What is the cheapest product in the Hardware category?",
        """SELECT name, unit_price FROM products WHERE category = 'Hardware'
        ORDER BY unit_price ASC LIMIT 1;""",
    ),
    _x(
        "extremes.dearest_category_price.3",
        "Which is the most expensive product in the Software category, and what is its price?",
        """SELECT name, unit_price FROM products WHERE category = 'Software'
        ORDER BY unit_price DESC LIMIT 1;""",
    ),
    _x(
        "extremes.overall_extreme.1",
        "Which product has the lowest list price of all?",
        "SELECT name, unit_price FROM products ORDER BY unit_price ASC LIMIT 1;",
    ),
    _x(
        "extremes.lowest_revenue_month.1",
        "Which product had the lowest revenue in September 2026, among the products that sold?",
        f"""SELECT p.name, ROUND({_REVENUE}, 2) AS revenue FROM order_items oi
        JOIN orders o ON o.id = oi.order_id JOIN products p ON p.id = oi.product_id
        WHERE o.status = 'completed'
        AND o.order_date >= '2026-09-01' AND o.order_date < '2026-10-01'
        GROUP BY p.name ORDER BY revenue ASC LIMIT 1;""",
    ),
    _x(
        "extremes.best_month.2",
        "Of the last 6 full calendar months, which one had the highest revenue?",
        f"""SELECT substr(o.order_date, 1, 7) AS month, ROUND({_REVENUE}, 2) AS revenue
        FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE o.status = 'completed'
        AND o.order_date >= '2026-06-01' AND o.order_date < '2026-12-01'
        GROUP BY month ORDER BY revenue DESC LIMIT 1;""",
    ),
    # --- ratio
    _x(
        "ratio.pct_status_month.3",
        "What percentage of the orders placed in April 2026 were refunded?",
        """SELECT ROUND(100.0 * SUM(CASE WHEN status = 'refunded' THEN 1 ELSE 0 END)
        / COUNT(*), 2) AS percent FROM orders
        WHERE order_date >= '2026-04-01' AND order_date < '2026-05-01';""",
    ),
    _x(
        "ratio.share_category_month.1",
        "What share of the revenue in January 2026 came from the Accessories category, in percent?",
        f"""SELECT ROUND(100.0 * SUM(CASE WHEN p.category = 'Accessories'
        THEN oi.quantity * oi.unit_price ELSE 0 END) / {_REVENUE}, 2) AS percent
        FROM order_items oi JOIN orders o ON o.id = oi.order_id
        JOIN products p ON p.id = oi.product_id WHERE o.status = 'completed'
        AND o.order_date >= '2026-01-01' AND o.order_date < '2026-02-01';""",
    ),
    _x(
        "ratio.pct_customers_country.3",
        "What percentage of our customers are from DE?",
        """SELECT ROUND(100.0 * SUM(CASE WHEN country = 'DE' THEN 1 ELSE 0 END) / COUNT(*), 2)
        AS percent FROM customers;""",
    ),
    _x(
        "ratio.times_product_month.2",
        "How many times as much revenue as 'Tablet Basic' did 'Laptop Basic' make in May 2026? "
        "Round to 2 decimals.",
        """SELECT ROUND(SUM(CASE WHEN p.name = 'Laptop Basic' THEN oi.quantity * oi.unit_price
        ELSE 0 END) / SUM(CASE WHEN p.name = 'Tablet Basic'
        THEN oi.quantity * oi.unit_price ELSE 0 END), 2) AS times
        FROM order_items oi JOIN orders o ON o.id = oi.order_id
        JOIN products p ON p.id = oi.product_id WHERE o.status = 'completed'
        AND o.order_date >= '2026-05-01' AND o.order_date < '2026-06-01';""",
    ),
    # --- date_range
    _x(
        "date_range.orders_last_days.1",
        "How many orders were placed in the last 60 days, today included, whatever their status?",
        """SELECT COUNT(*) AS orders FROM orders
        WHERE order_date >= '2026-10-08' AND order_date <= '2026-12-06';""",
    ),
    _x(
        "date_range.revenue_last_days.1",
        "What was the revenue of the last 30 days, including today?",
        f"""SELECT ROUND({_REVENUE}, 2) AS revenue FROM order_items oi
        JOIN orders o ON o.id = oi.order_id WHERE o.status = 'completed'
        AND o.order_date >= '2026-11-07' AND o.order_date <= '2026-12-06';""",
    ),
    _x(
        "date_range.single_days.2",
        "How many orders, of any status, have been placed today?",
        "SELECT COUNT(*) AS orders FROM orders WHERE order_date = '2026-12-06';",
    ),
    _x(
        "date_range.single_days.3",
        "What is the revenue of this month so far?",
        f"""SELECT ROUND({_REVENUE}, 2) AS revenue FROM order_items oi
        JOIN orders o ON o.id = oi.order_id WHERE o.status = 'completed'
        AND o.order_date >= '2026-12-01' AND o.order_date <= '2026-12-06';""",
    ),
    # --- join
    _x(
        "join.orders_country_month.2",
        "How many completed orders did customers from US place in March 2026?",
        """SELECT COUNT(*) AS orders FROM orders o JOIN customers c ON c.id = o.customer_id
        WHERE c.country = 'US' AND o.status = 'completed'
        AND o.order_date >= '2026-03-01' AND o.order_date < '2026-04-01';""",
    ),
    _x(
        "join.revenue_country_month.2",
        "What was the revenue from customers in IT in September 2026?",
        f"""SELECT ROUND({_REVENUE}, 2) AS revenue FROM order_items oi
        JOIN orders o ON o.id = oi.order_id JOIN customers c ON c.id = o.customer_id
        WHERE c.country = 'IT' AND o.status = 'completed'
        AND o.order_date >= '2026-09-01' AND o.order_date < '2026-10-01';""",
    ),
    _x(
        "join.buyers_product_month.1",
        "How many different customers bought 'Design Suite Basic' in completed orders in "
        "August 2026?",
        """SELECT COUNT(DISTINCT o.customer_id) AS customers FROM order_items oi
        JOIN orders o ON o.id = oi.order_id JOIN products p ON p.id = oi.product_id
        WHERE p.name = 'Design Suite Basic' AND o.status = 'completed'
        AND o.order_date >= '2026-08-01' AND o.order_date < '2026-09-01';""",
    ),
    _x(
        "join.top_country_month.1",
        "Customers of which country (code) generated the most revenue in May 2026?",
        f"""SELECT c.country, ROUND({_REVENUE}, 2) AS revenue FROM order_items oi
        JOIN orders o ON o.id = oi.order_id JOIN customers c ON c.id = o.customer_id
        WHERE o.status = 'completed'
        AND o.order_date >= '2026-05-01' AND o.order_date < '2026-06-01'
        GROUP BY c.country ORDER BY revenue DESC LIMIT 1;""",
    ),
    # --- all_status
    _x(
        "all_status.value_all_month.1",
        "What was the total value (quantity × unit price of every item) of all orders placed "
        "in October 2026, whatever their status?",
        f"""SELECT ROUND({_REVENUE}, 2) AS total_value FROM order_items oi
        JOIN orders o ON o.id = oi.order_id
        WHERE o.order_date >= '2026-10-01' AND o.order_date < '2026-11-01';""",
    ),
    _x(
        "all_status.orders_all_month.1",
        "How many orders were placed in August 2026, whatever their status?",
        """SELECT COUNT(*) AS orders FROM orders
        WHERE order_date >= '2026-08-01' AND order_date < '2026-09-01';""",
    ),
    _x(
        "all_status.value_status_month.1",
        "What was the total value (quantity × unit price of their items) of the refunded "
        "orders in October 2026?",
        f"""SELECT ROUND({_REVENUE}, 2) AS total_value FROM order_items oi
        JOIN orders o ON o.id = oi.order_id WHERE o.status = 'refunded'
        AND o.order_date >= '2026-10-01' AND o.order_date < '2026-11-01';""",
    ),
    _x(
        "all_status.units_all_product.1",
        "How many units of 'Docking Station Pro' were ordered in February 2026, counting every "
        "order whatever its status?",
        """SELECT SUM(oi.quantity) AS units FROM order_items oi
        JOIN orders o ON o.id = oi.order_id JOIN products p ON p.id = oi.product_id
        WHERE p.name = 'Docking Station Pro'
        AND o.order_date >= '2026-02-01' AND o.order_date < '2026-03-01';""",
    ),
    # --- exists
    _x(
        "exists.refund_country_month.1",
        "Are there any customers from US who had a refunded order in September 2026?",
        """SELECT COUNT(*) AS refunded_orders FROM orders o
        JOIN customers c ON c.id = o.customer_id WHERE c.country = 'US'
        AND o.status = 'refunded'
        AND o.order_date >= '2026-09-01' AND o.order_date < '2026-10-01';""",
    ),
    _x(
        "exists.price_above.2",
        "Is there any product in the Software category with a list price above 727 dollars?",
        """SELECT COUNT(*) AS products FROM products WHERE category = 'Software'
        AND unit_price > 727;""",
    ),
    _x(
        "exists.product_sold_on_day.2",
        "Was 'Webcam Basic' sold in any completed order on 2026-08-21?",
        """SELECT COUNT(*) AS order_lines FROM order_items oi
        JOIN orders o ON o.id = oi.order_id JOIN products p ON p.id = oi.product_id
        WHERE p.name = 'Webcam Basic' AND o.status = 'completed'
        AND o.order_date = '2026-08-21';""",
    ),
    _x(
        "exists.cancel_country_month.1",
        "Did any customer from CA place an order in July 2026 that was then cancelled?",
        """SELECT COUNT(*) AS cancelled_orders FROM orders o
        JOIN customers c ON c.id = o.customer_id WHERE c.country = 'CA'
        AND o.status = 'cancelled'
        AND o.order_date >= '2026-07-01' AND o.order_date < '2026-08-01';""",
    ),
    # --- negation
    _x(
        "negation.never_had_status.3",
        "How many customers from CA have never had a refunded order?",
        """SELECT COUNT(*) AS customers FROM customers c WHERE c.country = 'CA'
        AND c.id NOT IN (SELECT o.customer_id FROM orders o WHERE o.status = 'refunded');""",
    ),
    _x(
        "negation.products_without_status_month.3",
        "How many of our products did not appear in any cancelled order in August 2026?",
        """SELECT COUNT(*) AS products FROM products p WHERE p.id NOT IN (
        SELECT oi.product_id FROM order_items oi JOIN orders o ON o.id = oi.order_id
        WHERE o.status = 'cancelled'
        AND o.order_date >= '2026-08-01' AND o.order_date < '2026-09-01');""",
    ),
    _x(
        "negation.not_completed_month.1",
        "How many orders placed in August 2026 were not completed?",
        """SELECT COUNT(*) AS orders FROM orders WHERE status <> 'completed'
        AND order_date >= '2026-08-01' AND order_date < '2026-09-01';""",
    ),
    _x(
        "negation.idle_country_month.2",
        "How many customers from ES placed no order at all in September 2026?",
        """SELECT COUNT(*) AS customers FROM customers c WHERE c.country = 'ES'
        AND c.id NOT IN (SELECT o.customer_id FROM orders o
        WHERE o.order_date >= '2026-09-01' AND o.order_date < '2026-10-01');""",
    ),
    # --- comparison
    _x(
        "comparison.product_vs_product.1",
        "Did 'Printer Basic' make more revenue than 'Mouse Basic' in September 2026?",
        """SELECT SUM(CASE WHEN p.name = 'Printer Basic' THEN oi.quantity * oi.unit_price
        ELSE 0 END) > SUM(CASE WHEN p.name = 'Mouse Basic'
        THEN oi.quantity * oi.unit_price ELSE 0 END) AS more
        FROM order_items oi JOIN orders o ON o.id = oi.order_id
        JOIN products p ON p.id = oi.product_id WHERE o.status = 'completed'
        AND o.order_date >= '2026-09-01' AND o.order_date < '2026-10-01';""",
    ),
    _x(
        "comparison.month_vs_month.4",
        "Was the revenue in April 2026 higher than in November 2025?",
        """SELECT SUM(CASE WHEN o.order_date >= '2026-04-01' AND o.order_date < '2026-05-01'
        THEN oi.quantity * oi.unit_price ELSE 0 END)
        > SUM(CASE WHEN o.order_date >= '2025-11-01' AND o.order_date < '2025-12-01'
        THEN oi.quantity * oi.unit_price ELSE 0 END) AS higher
        FROM order_items oi JOIN orders o ON o.id = oi.order_id
        WHERE o.status = 'completed';""",
    ),
    _x(
        "comparison.country_vs_country.1",
        "Do we have more customers from JP than from FR?",
        """SELECT SUM(CASE WHEN country = 'JP' THEN 1 ELSE 0 END)
        > SUM(CASE WHEN country = 'FR' THEN 1 ELSE 0 END) AS more FROM customers;""",
    ),
    # --- arithmetic (no table: the database is a calculator too)
    _x("arithmetic.percent_of.2", "What is 35% of 1900?", "SELECT 1900 * 35 / 100.0 AS result;"),
    _x(
        "arithmetic.sum_times.2",
        "What is (593 + 8114) * 15?",
        "SELECT (593 + 8114) * 15 AS result;",
    ),
    _x(
        "arithmetic.divide.1",
        "What is 68945 divided by 4?",
        "SELECT ROUND(68945 / 4.0, 2) AS result;",
    ),
    _x(
        "arithmetic.price_change.2",
        "A price of 537 dollars rises by 25% and then falls by 5%. What is the final price?",
        "SELECT ROUND(537 * 1.25 * 0.95, 2) AS final_price;",
    ),
)
