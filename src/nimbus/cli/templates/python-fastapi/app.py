"""A FastAPI app served by Lambda through Mangum (the ASGI adapter): every route of the HTTP API reaches it."""

from fastapi import FastAPI
from mangum import Mangum
from pydantic import BaseModel

app = FastAPI(title="{{service}}")


class Item(BaseModel):
    name: str
    price: float


@app.get("/hello/{name}")
def hello(name: str) -> dict[str, str]:
    return {"message": f"Hello, {name}!"}


@app.post("/items", status_code=201)
def create(item: Item) -> dict[str, object]:
    return {"created": item.model_dump()}


handler = Mangum(app, lifespan="off")
